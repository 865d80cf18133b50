"""Fixtures for the core's tests: agents on real git repositories."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleetcore.agent.agent import Agent
from fleetcore.agent.clock import ManualClock
from fleetcore.config.agent import load_agent_config
from fleetcore.plugin.manager import PluginManager
from fleetcore.testing.gitrepo import FleetRepo

FAST_AGENT = """\
    device_id = "{device_id}"
    role = "{role}"
    segment = "{segment}"
    state_dir = "{state_dir}"

    [source]
    repo = "{repo}"
    branch = "main"
    {source_extra}

    [throttle]
    min_interval = "0s"
    failure_pause = "0s"
    max_per_hour = 1000
    max_failures = {max_failures}

    [retry]
    attempts = 2
    backoff = "10ms"

    [disk]
    reserve = "1M"
    {extra}
"""


class Device:
    """One simulated device: its agent.toml, state folder and marker file."""

    def __init__(self, root: Path, repo: str, **fields: Any) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.out = root / "running.txt"
        values = {
            "device_id": "pi-001",
            "role": "web",
            "segment": "general",
            "state_dir": str(root / "state"),
            "repo": repo,
            "source_extra": "",
            "max_failures": 3,
            "extra": "",
        }
        values.update(fields)
        self.config_path = root / "agent.toml"
        self.config_path.write_text(textwrap.dedent(FAST_AGENT.format(**values)))
        self.clock = ManualClock()

    def agent(self, pm: PluginManager | None = None) -> Agent:
        return Agent(load_agent_config(self.config_path), pm=pm, clock=self.clock)

    def running(self) -> str | None:
        """The marker the running release's activate.sh wrote: 'v1 <commit>'."""
        return self.out.read_text().strip() if self.out.exists() else None

    @property
    def state(self) -> Path:
        return self.root / "state"


@pytest.fixture
def device(
    tmp_path: Path, fleet_repo: FleetRepo, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Device]:
    def make(name: str = "pi-001", repo: str | None = None, **fields: Any) -> Device:
        dev = Device(tmp_path / name, repo or str(fleet_repo.path), device_id=name, **fields)
        # The test roles' activate.sh writes which release it started here.
        monkeypatch.setenv("FLEETCORE_TEST_OUT", str(dev.out))
        return dev

    return make
