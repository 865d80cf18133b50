"""Gates: the seed's rules for when an update may be attempted at all.

- minimum gap between attempts (``throttle.min_interval``, 5 minutes)
- at most ``throttle.max_per_hour`` attempts in any hour (1)
- a pause after a failed update (``throttle.failure_pause``, 15 minutes)
- safe mode after ``throttle.max_failures`` consecutive failures (3)
- updates that need a reboot only inside the maintenance window
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from attrs import frozen

from fleetcore.agent.state import State
from fleetcore.config.agent import Throttle

if TYPE_CHECKING:
    from fleetcore.config.fleet import MaintenanceWindow

HOUR = dt.timedelta(hours=1)


@frozen
class Deferred:
    reason: str
    until: dt.datetime | None = None


def throttle_gate(state: State, throttle: Throttle, now: dt.datetime) -> Deferred | None:
    if state.consecutive_failures and state.last_failure is not None:
        until = state.last_failure + dt.timedelta(seconds=throttle.failure_pause.seconds)
        if now < until:
            return Deferred(f"pausing after a failed update until {until:%H:%M:%S}", until)
    if state.last_attempt is not None:
        until = state.last_attempt + dt.timedelta(seconds=throttle.min_interval.seconds)
        if now < until:
            return Deferred(f"last attempt was under {throttle.min_interval} ago", until)
    recent = [t for t in state.recent_attempts if now - t < HOUR]
    if len(recent) >= throttle.max_per_hour:
        until = min(recent) + HOUR
        return Deferred(
            f"already {len(recent)} update(s) in the last hour "
            f"(max_per_hour = {throttle.max_per_hour})",
            until,
        )
    return None


def window_gate(window: MaintenanceWindow | None, now: dt.datetime) -> Deferred | None:
    if window is None or window.contains(now):
        return None
    return Deferred(
        f"this update needs a reboot; waiting for the maintenance window "
        f"({', '.join(window.days)} {window.start:%H:%M}-{window.end:%H:%M} "
        f"{window.timezone})"
    )


def attempts_after(state: State, now: dt.datetime) -> tuple[dt.datetime, ...]:
    return (*[t for t in state.recent_attempts if now - t < HOUR], now)
