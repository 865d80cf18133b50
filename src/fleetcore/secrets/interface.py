"""What a secrets provider implements: putting secrets into a release.

Providers run after the release is verified and before it is validated, in
the order the role lists them (later ones override earlier keys). A provider
may write files into the release folder (mode 0600) and return environment
values, which the agent writes to the release's env file for the activator.

Secrets must never reach logs, history, status reports or error messages:
raise errors that name the file or path and the reason, never the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from attrs import frozen

from fleetcore.plugin.types import DeviceInfo


@frozen(kw_only=True)
class SecretsContext:
    device: DeviceInfo
    release_dir: Path
    commit: str
    state_dir: Path
    """The agent's state folder, for caches the provider keeps (encrypted)."""
    role_options: Any = None
    """The role's ``[secrets.NAME]`` table, structured into the record's
    ``role_config_type``."""
    server: Any = None
    """In managed mode, the device's :class:`fleetcore.agent.managed.ServerClient`
    (authenticated with the device's own credential); None in git-only mode."""


class SecretsProviderImpl(Protocol):
    def provide(self, ctx: SecretsContext) -> Mapping[str, str]:
        """Put this provider's secrets into ``ctx.release_dir`` and return
        environment values for the services (may be empty)."""
