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

The names here are defined in :mod:`fleetcore.plugin.protocols` (values in
:mod:`fleetcore.model`) and exported by :mod:`fleetcore.plugin` too.
"""

from fleetcore.model import DeviceInfo
from fleetcore.plugin.protocols import ENV_FILE, ActivationContext, ActivatorImpl, project_name

__all__ = ["ENV_FILE", "ActivationContext", "ActivatorImpl", "DeviceInfo", "project_name"]
