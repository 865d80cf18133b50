"""What every part of the agent shares: the device, its configuration, the
plugin manager, the state folder, the clock and, in managed mode, the
server client. Built once by :class:`fleetcore.agent.agent.Agent` and handed
to each collaborator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetcore.agent.clock import Clock
from fleetcore.agent.probes import Probes
from fleetcore.agent.sampling import Sampler
from fleetcore.agent.state import Network, StateStore
from fleetcore.config.agent import AgentConfig
from fleetcore.fetch.interface import Source
from fleetcore.fetch.select import build_source
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import DeviceInfo


class AgentContext:
    """One device's agent, as its parts see it."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        pm: PluginManager,
        clock: Clock,
        client: Any = None,
    ) -> None:
        self.config = config
        self.pm = pm
        self.clock = clock
        self.client = client
        """The ServerClient in managed mode, None in git-only mode."""
        self.store = StateStore(config.state_dir)
        self.device = DeviceInfo(
            device_id=config.device_id, role=config.role, segment=config.segment
        )
        self.config_source = str(config.path or "agent.toml")
        self.network: Network = "online"
        """The network mode as of this cycle: retries are cut short when offline."""
        self.sampler = Sampler(self.store.root)
        """Resource use between two status reports."""
        self.probes = Probes(pm, self.device)
        """The plugins' resource probes (containers), for the status report."""
        self.secret_values: frozenset[str] = frozenset()
        """Values of the release's secrets: masked in every message we write."""
        self.progress: Callable[[str, int | None], Callable[[int], None]] | None = None
        """Set by a command run on a terminal: ``(label, total) -> update(done)``
        meters for long steps (unpacking a release). None in services."""
        self._source: Source | None = None

    @property
    def role_file(self) -> str:
        return f"roles/{self.device.role}/role.toml"

    def source(self) -> Source:
        """Where releases come from: the ``[source]`` fetcher, or the server."""
        if self._source is None:
            if self.config.source is None:
                from fleetcore.agent.managed import ServerSource

                self._source = ServerSource(self.client)
            else:
                self._source = build_source(
                    self.pm,
                    self.config.source,
                    cache_root=self.store.cache,
                    config_source=self.config_source,
                    progress=self.progress,
                )
        return self._source

    def redact(self, text: str) -> str:
        for value in sorted(self.secret_values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text
