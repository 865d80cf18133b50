"""Desired state: which release a device should run now, and why.

The precedence is a contract shared by the agent (git-only mode) and the
server (managed mode):

1. device in maintenance mode (``auto_update = false``): no update at all
2. device version lock, until it expires or is lifted
3. fleet forced version (emergency pin), until it expires or is lifted
4. device branch override: the head of that branch
5. the rollout: the branch head if the device is eligible under the role's
   strategy; otherwise the rollout's ``stable`` commit; otherwise hold.

Percentage eligibility: a device is in a rollout at ``p`` percent when
``int.from_bytes(sha256((device_id + commit).encode()).digest()[:8], "big") % 100 < p``
(see :func:`percentage_bucket`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from attrs import frozen

from fleetcore.model import DeviceInfo, percentage_bucket  # noqa: F401 - percentage_bucket re-exported

if TYPE_CHECKING:
    # Annotations only: a managed device, which reads no fleet policy, does not import it.
    from fleetcore.config.fleet import DevicePolicy, FleetPolicy, MaintenanceWindow

Why = Literal["maintenance", "lock", "pin", "override", "rollout", "stable", "hold"]


@frozen(kw_only=True)
class DesiredState:
    """The commit a device should run (``None``: keep what it runs) and why."""

    commit: str | None
    why: Why
    reason: str = ""
    branch: str | None = None
    maintenance_window: MaintenanceWindow | None = None
    resume: int = 0
    """Managed mode: how often an operator let the device leave safe mode."""
    safe_mode: int = 0
    """Managed mode: how often an operator put the device in safe mode."""
    rollout_strategy: str | None = None
    rollout_options: Mapping[str, Any] | None = None
    """Managed mode: the rollout the server applied, so the device can check
    its own eligibility with the same strategy plugin."""
    issued_at: dt.datetime | None = None
    """Managed mode: the server's time when it answered (freshness)."""

    @property
    def updates_allowed(self) -> bool:
        return self.why != "maintenance"


EligibleFn = Callable[[str, DeviceInfo, str], bool]
"""(strategy name, device, commit) -> eligible; raises for an unknown strategy."""


def resolve(
    *,
    device: DeviceInfo,
    fleet: FleetPolicy,
    device_policy: DevicePolicy,
    head: str,
    now: dt.datetime,
    eligible: EligibleFn,
    override_head: Callable[[str], str] | None = None,
) -> DesiredState:
    """Apply the precedence contract. ``head`` is the head of the device's
    configured branch; ``override_head(branch)`` resolves another branch."""
    window = device_policy.maintenance_window or fleet.maintenance_window
    if not device_policy.auto_update:
        return DesiredState(
            commit=None,
            why="maintenance",
            reason="auto_update is off for this device",
            maintenance_window=window,
        )
    lock = device_policy.version_lock
    if lock is not None and lock.active(now):
        who = f" by {lock.locked_by}" if lock.locked_by else ""
        return DesiredState(
            commit=lock.commit,
            why="lock",
            reason=f"locked{who}: {lock.reason}".rstrip(": "),
            maintenance_window=window,
        )
    pin = fleet.forced_version
    if pin is not None and pin.active(now):
        return DesiredState(
            commit=pin.commit,
            why="pin",
            reason=f"fleet pinned: {pin.reason}".rstrip(": "),
            maintenance_window=window,
        )
    if device_policy.branch and override_head is not None:
        return DesiredState(
            commit=override_head(device_policy.branch),
            why="override",
            reason=f"device follows branch {device_policy.branch}",
            branch=device_policy.branch,
            maintenance_window=window,
        )
    rollout = fleet.rollout_for(device.role)
    if rollout.strategy == "all" or eligible(rollout.strategy, device, head):
        return DesiredState(
            commit=head,
            why="rollout",
            reason=f"rollout ({rollout.strategy})",
            maintenance_window=window,
        )
    if rollout.stable:
        return DesiredState(
            commit=rollout.stable,
            why="stable",
            reason=f"not yet in the {rollout.strategy} rollout of {head[:12]}",
            maintenance_window=window,
        )
    return DesiredState(
        commit=None,
        why="hold",
        reason=f"not yet in the {rollout.strategy} rollout of {head[:12]}",
        maintenance_window=window,
    )
