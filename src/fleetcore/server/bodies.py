"""Request bodies: frozen attrs classes structured by the strict converter.

A wrong type, a missing key or an unknown key is a 400 naming the key; the
converter never coerces ("5" is not 5).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, TypeVar

import cattrs
from attrs import field, frozen

from fleetcore.config.agent import SEGMENTS, valid_branch, valid_labels
from fleetcore.config.convert import (
    UserValueError,
    between,
    checked,
    make_converter,
    not_empty,
    one_of,
    problems_of,
)
from fleetcore.config.fleet import MaintenanceWindow

T = TypeVar("T")

STATUSES = (
    "healthy",
    "degraded",
    "safe_mode",
    "failed",
    "updating",
    "unknown",
    "stale_desired_state",
)
ROLES = ("viewer", "operator", "admin")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class ApiError(Exception):
    """A request the server refuses: status code, one readable line, the key."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field

    def json(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


def _identifier(_inst: Any, attr: Any, value: str) -> None:
    if not ID_RE.match(value):
        raise ValueError(
            f"{attr.name} must be letters, digits, '.', '_' or '-' (at most 200), got {value!r}"
        )


def _short(limit: int) -> Any:
    def check(_inst: Any, attr: Any, value: str | None) -> None:
        if value is not None and len(value) > limit:
            raise ValueError(f"{attr.name} is longer than {limit} characters")

    return check


def _structure_float(value: Any, _type: type) -> float:
    # Python's json module reads NaN and Infinity, which no database column
    # (nor JSON document) should hold.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserValueError(f"expected a finite number, got {value!r}")
    return float(value)


converter = make_converter()
converter.register_structure_hook(float, _structure_float)


def parse(data: Any, cls: type[T]) -> T:
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as exc:
        problems = problems_of(exc)
        first = problems[0] if problems else str(exc)
        _message, _, where = first.rpartition(" @ ")
        raise ApiError(400, "; ".join(problems), where or None) from None


@frozen(kw_only=True)
class EnrollRequest:
    enrollment_token: str
    device_id: str = field(validator=checked(_identifier))
    role: str = field(validator=checked(_identifier))
    segment: str = field(default="general", validator=checked(one_of(*SEGMENTS)))
    hostname: str = field(default="", validator=checked(_short(255)))
    labels: dict[str, str] | None = field(default=None, validator=checked(valid_labels))
    branch: str | None = field(default=None, validator=checked(valid_branch))
    """``[server] branch`` of the device's agent.toml: follow it instead of rollouts."""


def _non_negative(_inst: Any, attr: Any, value: float | int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attr.name} must not be negative, got {value}")


def _at_most(limit: int) -> Any:
    def check(_inst: Any, attr: Any, value: list[Any] | None) -> None:
        if value is not None and len(value) > limit:
            raise ValueError(f"at most {limit} {attr.name}, got {len(value)}")

    return check


MAX_CONTAINERS = 20
"""Containers per status report: bounds the per-device series on /metrics."""


@frozen(kw_only=True)
class ContainerSample:
    """One container's resource use, as the device's container plugin measured it."""

    name: str = field(validator=checked(_short(200)))
    cpu_percent: float | None = field(default=None, validator=checked(_non_negative))
    memory_bytes: float | None = field(default=None, validator=checked(_non_negative))
    memory_limit_bytes: float | None = field(default=None, validator=checked(_non_negative))
    restarts: int = field(default=0, validator=checked(_non_negative))


@frozen(kw_only=True)
class DriftSummary:
    """The device's last drift check, as its status report carries it."""

    verdict: str = field(validator=checked(_short(20)))
    """clean, fixed, left or unknown."""
    reason: str = field(default="", validator=checked(_short(4000)))
    checked_at: str | None = field(default=None, validator=checked(_short(64)))


@frozen(kw_only=True)
class StatusReport:
    status: str = field(validator=checked(one_of(*STATUSES)))
    hostname: str | None = field(default=None, validator=checked(_short(255)))
    role: str | None = None
    commit: str | None = field(default=None, validator=checked(_short(64)))
    agent_version: str | None = field(default=None, validator=checked(_short(100)))
    uptime_seconds: float | None = None
    last_update: str | None = field(default=None, validator=checked(_short(64)))
    last_update_result: str | None = field(default=None, validator=checked(_short(50)))
    current_error: str | None = field(default=None, validator=checked(_short(4000)))
    ip_address: str | None = field(default=None, validator=checked(_short(100)))
    cpu_percent: float | None = None
    memory_percent: float | None = None
    disk_percent: float | None = None
    network_kbps: float | None = None
    network_receive_bytes_per_second: float | None = field(
        default=None, validator=checked(_non_negative)
    )
    network_transmit_bytes_per_second: float | None = field(
        default=None, validator=checked(_non_negative)
    )
    containers: list[ContainerSample] | None = field(
        default=None, validator=checked(_at_most(MAX_CONTAINERS))
    )
    """Left out (or null) by agents without a container plugin."""
    drift: DriftSummary | None = None
    mode: str | None = field(default=None, validator=checked(_short(50)))
    pending_commit: str | None = field(default=None, validator=checked(_short(64)))
    labels: dict[str, str] | None = field(default=None, validator=checked(valid_labels))
    """Replaces the device's labels; left out (or null), they stay as they are."""
    branch: str | None = field(default=None, validator=checked(valid_branch))
    """The branch the device's agent.toml says to follow; null: rollouts.
    Left out (older agents), it stays as it is."""


def _log_lines(_inst: Any, attr: Any, value: list[str]) -> None:
    if len(value) > 500:
        raise ValueError(f"at most 500 {attr.name}, got {len(value)}")
    if any(len(line) > 2000 for line in value):
        raise ValueError(f"{attr.name} must be at most 2000 characters each")


@frozen(kw_only=True)
class LogUpload:
    """A device's recent log lines, sent when an operator asked for them."""

    taken_at: str = field(validator=checked(_short(64)))
    lines: list[str] = field(validator=checked(_log_lines))


@frozen(kw_only=True)
class HistoryEntry:
    timestamp: dt.datetime
    result: str = field(validator=checked(one_of("success", "rollback", "failed", "skipped")))
    from_commit: str | None = field(default=None, validator=checked(_short(64)))
    to_commit: str | None = field(default=None, validator=checked(_short(64)))
    reason: str = field(default="", validator=checked(_short(4000)))
    duration_seconds: float = 0.0
    # The agent's history lines carry these too; accepted, checked against the path.
    device_id: str | None = None
    role: str | None = None
    event: str = field(default="update", validator=checked(_short(20)))
    """``update``, or the device's other events (``drift``, ``mode``, ``outage``)."""


def _at_most_1000(_inst: Any, attr: Any, value: list[Any]) -> None:
    if len(value) > 1000:
        raise ValueError(f"at most 1000 {attr.name} at a time, got {len(value)}")


@frozen(kw_only=True)
class HistoryBody:
    entries: list[HistoryEntry] = field(validator=checked(_at_most_1000))


@frozen(kw_only=True)
class Step:
    options: dict[str, Any] = field(factory=dict)
    wait_seconds: float = field(default=300.0, validator=checked(between(0, 30 * 86400)))


@frozen(kw_only=True)
class RolloutRequest:
    commit: str
    strategy: str
    role: str | None = field(default=None)
    steps: list[Step] | None = None
    wait_seconds: float = field(default=300.0, validator=checked(between(0, 30 * 86400)))
    threshold: float = field(default=0.2, validator=checked(between(0, 1)))
    auto_promote: bool = True
    reason: str = ""


@frozen(kw_only=True)
class ActionRequest:
    reason: str = ""


@frozen(kw_only=True)
class BlastRadiusRequest:
    """Blast-radius thresholds; a key left out keeps its value."""

    warning: float | None = None
    critical: float | None = None
    emergency: float | None = None
    window_seconds: float | None = None
    min_devices: int | None = None
    reason: str = ""


@frozen(kw_only=True)
class HaltRequest:
    reason: str = field(validator=checked(_short(1000)))
    rollback: bool = False
    """Also pin every role to its last known good commit (ROLLBACK FLEET)."""


@frozen(kw_only=True)
class PinRequest:
    commit: str
    reason: str = ""
    expires: dt.datetime | None = None


@frozen(kw_only=True)
class LockRequest:
    commit: str
    reason: str = ""
    until: dt.datetime | None = None


@frozen(kw_only=True)
class WindowRequest:
    maintenance_window: MaintenanceWindow | None
    """None clears the fleet's window."""
    reason: str = ""


@frozen(kw_only=True)
class OverrideRequest:
    branch: str | None = None
    auto_update: bool | None = None
    maintenance_window: MaintenanceWindow | None = None
    clear: bool = False
    reason: str = ""


@frozen(kw_only=True)
class TokenRequest:
    role: str = field(validator=checked(one_of(*ROLES)))
    name: str = field(default="", validator=checked(_short(200)))
    expires: dt.datetime | None = None
    """None: the token never expires (revoke it to end it)."""


def _optional(validator: Any) -> Any:
    def check(inst: Any, attr: Any, value: Any) -> None:
        if value is not None:
            validator(inst, attr, value)

    return check


@frozen(kw_only=True)
class EnrollmentTokenRequest:
    """An enrollment token and its scope; left-out limits allow any."""

    role: str | None = field(default=None, validator=checked(_optional(_identifier)))
    """The device role it enrolls (None: any)."""
    segment: str | None = field(default=None, validator=checked(_optional(one_of(*SEGMENTS))))
    max_uses: int | None = field(default=None, validator=checked(_optional(between(1, 1_000_000))))
    ttl_seconds: float = field(default=7 * 86400.0, validator=checked(between(60, 366 * 86400)))
    require_approval: bool = False
    """Devices it enrolls are pending until an admin accepts them."""
    name: str = field(default="", validator=checked(_short(200)))


@frozen(kw_only=True)
class ReenrollRequest:
    reason: str = field(validator=checked(not_empty))
    ttl_seconds: float = field(default=3600.0, validator=checked(between(60, 7 * 86400)))
    """How long the one-time approval holds."""
