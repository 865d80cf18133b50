"""What an activator plugin implements: switching services to a release.

The agent swaps the ``current`` and ``previous`` links itself, atomically;
the activator then makes the services match the new release. The same
activator is asked to bring the previous release back when the new one is
unhealthy, so ``start`` must work from any state, including a half-started
new release.

A minimal activator for roles that are systemd units::

    class SystemdActivator:
        def __init__(self, options):
            self.unit = options.unit

        def start(self, ctx):
            run(["systemctl", "link", ctx.release_dir / f"{self.unit}.service"])
            run(["systemctl", "restart", self.unit])

        def stop(self, ctx):
            run(["systemctl", "stop", self.unit])

    @hookimpl
    def fleetcore_register_activators():
        yield Activator(
            name="systemd", summary="A systemd unit shipped in the role",
            config_type=SystemdOptions, factory=SystemdActivator,
            detect=lambda release_dir: any(release_dir.glob("*.service")),
        )

Raise :class:`fleetcore.errors.FleetcoreError` (or any exception) when the
services could not be brought up: the agent rolls back and records the
message as the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from attrs import field, frozen

from fleetcore.plugin.types import DeviceInfo


@frozen(kw_only=True)
class ActivationContext:
    device: DeviceInfo
    release_dir: Path
    """The release to start (or stop), unpacked, verified, with its secrets."""
    commit: str
    env: Mapping[str, str] = field(factory=dict)
    """``FLEETCORE_RELEASE_DIR``, ``FLEETCORE_COMMIT``, ``FLEETCORE_ROLE``,
    ``FLEETCORE_DEVICE_ID`` and the secrets providers' values."""
    project: str = ""
    """A stable name for this device's services across releases
    (``fleetcore-<role>``), e.g. the compose project name."""
    previous_dir: Path | None = None
    """When starting: the release being replaced, if any."""


ENV_FILE = ".fleetcore.env"
"""The file in a release folder holding the environment values secrets
providers gave (``KEY=value`` lines, mode 0600); activators pass it on."""


def project_name(device: DeviceInfo) -> str:
    """The name a device's services keep across releases: ``fleetcore-<role>``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in device.role.lower())
    return f"fleetcore-{safe}"


class ActivatorImpl(Protocol):
    """The object an :class:`~fleetcore.plugin.types.Activator` factory returns."""

    def start(self, ctx: ActivationContext) -> None:
        """Bring the services of ``ctx.release_dir`` up, replacing whatever
        ran before. Return when they were started (not necessarily healthy:
        health checks come after the settle time)."""

    def stop(self, ctx: ActivationContext) -> None:
        """Stop the services of ``ctx.release_dir``. Called on the outgoing
        release when the activator changes between releases, and when a first
        install fails and there is nothing to go back to."""
