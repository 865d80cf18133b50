"""Policy in the fleet repo: ``fleet.toml`` and ``devices/<device_id>.toml``.

In git-only mode the agent reads both from the head of its branch; the
server (managed mode) keeps the same records in its database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from attrs import field, frozen

from fleetcore.config.convert import checked, not_empty, one_of, parse_toml, split_table, structure

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@frozen(kw_only=True)
class ForcedVersion:
    """The fleet's emergency pin: every device runs ``commit`` until it expires."""

    commit: str = field(validator=checked(not_empty))
    reason: str = ""
    expires: dt.datetime | None = None

    def active(self, now: dt.datetime) -> bool:
        return self.expires is None or now < self.expires


@frozen(kw_only=True)
class VersionLock:
    """A device held on ``commit`` until ``locked_until`` (or until unlocked)."""

    commit: str = field(validator=checked(not_empty))
    reason: str = ""
    locked_by: str = ""
    locked_until: dt.datetime | None = None

    def active(self, now: dt.datetime) -> bool:
        return self.locked_until is None or now < self.locked_until


def _days(_inst: Any, attr: Any, value: tuple[str, ...]) -> None:
    for day in value:
        one_of(*DAYS)(_inst, attr, day.lower())


@frozen(kw_only=True)
class MaintenanceWindow:
    """When updates that need a reboot may happen: ``days`` from ``start`` to
    ``end`` (wrapping past midnight when end < start), in ``timezone``."""

    days: tuple[str, ...] = field(default=DAYS, validator=checked(_days))
    start: dt.time = dt.time(2, 0)
    end: dt.time = dt.time(6, 0)
    timezone: str = "UTC"

    def contains(self, now: dt.datetime) -> bool:
        from zoneinfo import ZoneInfo

        local = now.astimezone(ZoneInfo(self.timezone))
        day = DAYS[local.weekday()]
        t = local.time().replace(tzinfo=None)
        days = {d.lower() for d in self.days}
        if self.start <= self.end:
            return day in days and self.start <= t < self.end
        # A window past midnight belongs to the day it starts on.
        yesterday = DAYS[(local.weekday() - 1) % 7]
        return (day in days and t >= self.start) or (yesterday in days and t < self.end)


@frozen(kw_only=True)
class RolloutPolicy:
    """``[rollout]``: which devices take the branch head, by a strategy plugin.

    ``stable`` is the commit devices outside the rollout run (the last one that
    finished rolling out); without it they keep what they run.
    """

    strategy: str = "all"
    stable: str | None = None
    options: dict[str, Any] = field(factory=dict)


@frozen(kw_only=True)
class RolePolicy:
    rollout: RolloutPolicy | None = None


@frozen(kw_only=True)
class FleetPolicy:
    forced_version: ForcedVersion | None = None
    rollout: RolloutPolicy = RolloutPolicy()
    maintenance_window: MaintenanceWindow | None = None
    roles: dict[str, RolePolicy] = field(factory=dict)

    def rollout_for(self, role: str) -> RolloutPolicy:
        role_policy = self.roles.get(role)
        if role_policy is not None and role_policy.rollout is not None:
            return role_policy.rollout
        return self.rollout


@frozen(kw_only=True)
class DevicePolicy:
    auto_update: bool = True
    branch: str | None = None
    version_lock: VersionLock | None = None
    maintenance_window: MaintenanceWindow | None = None


def _rollout_table(table: Any) -> Any:
    if not isinstance(table, dict):
        return table
    core, rest = split_table(table, ("strategy", "stable"))
    return {**core, "options": rest}


def parse_fleet_policy(text: bytes | None, source: str = "fleet.toml") -> FleetPolicy:
    if not text:
        return FleetPolicy()
    data = parse_toml(text, source)
    if "rollout" in data:
        data["rollout"] = _rollout_table(data["rollout"])
    roles = data.get("roles")
    if isinstance(roles, dict):
        data["roles"] = {
            name: {**table, "rollout": _rollout_table(table["rollout"])}
            if isinstance(table, dict) and "rollout" in table
            else table
            for name, table in roles.items()
        }
    return structure(data, FleetPolicy, source=source)


def parse_device_policy(text: bytes | None, source: str) -> DevicePolicy:
    if not text:
        return DevicePolicy()
    return structure(parse_toml(text, source), DevicePolicy, source=source)
