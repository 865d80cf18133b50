"""Desired state for managed devices, through :func:`fleetcore.policy.resolve`.

The server never re-implements the precedence: it turns its database rows
into the same ``FleetPolicy``/``DevicePolicy`` values the agent reads from
``fleet.toml`` and asks ``resolve()``. Rollout eligibility goes through the
same rollout-strategy plugins the agent uses.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from attrs import field, frozen
from sqlalchemy.engine import Connection

from fleetcore.config.convert import structure
from fleetcore.config.fleet import (
    DevicePolicy,
    FleetPolicy,
    ForcedVersion,
    MaintenanceWindow,
    RolePolicy,
    RolloutPolicy,
    VersionLock,
)
from fleetcore.plugin.types import DeviceInfo
from fleetcore.policy import DesiredState, resolve
from fleetcore.rollout.interface import Strategy
from fleetcore.rollout.select import RolloutStrategies
from fleetcore.server import schema as t
from fleetcore.server.store import Store

ACTIVE_STATES = ("running", "halted")


def ts(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC)


def iso(value: float | None) -> str | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


@frozen
class Rollout:
    id: int
    role: str | None
    commit: str
    strategy: str
    steps: tuple[dict[str, Any], ...]
    step: int
    state: str
    reason: str
    threshold: float
    auto_promote: bool
    created_by: str
    created_at: float
    step_started_at: float
    finished_at: float | None
    roles: tuple[str, ...] | None = None

    @classmethod
    def from_row(cls, row: Any) -> Rollout:
        return cls(
            id=row.id,
            role=row.role,
            commit=row.commit,
            strategy=row.strategy,
            steps=tuple(json.loads(row.steps)),
            step=row.step,
            state=row.state,
            reason=row.reason,
            threshold=row.threshold,
            auto_promote=bool(row.auto_promote),
            created_by=row.created_by,
            created_at=row.created_at,
            step_started_at=row.step_started_at,
            finished_at=row.finished_at,
            roles=tuple(json.loads(row.roles)) if row.roles else None,
        )

    def options(self, step: int | None = None) -> dict[str, Any]:
        index = self.step if step is None else step
        return dict(self.steps[min(index, len(self.steps) - 1)]["options"])

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "strategy": self.strategy, "options": self.options()}


@frozen
class Snapshot:
    """Everything fleet-wide that desired states depend on, read once."""

    pin: ForcedVersion | None
    window: MaintenanceWindow | None
    rollouts: tuple[Rollout, ...]  # active, newest first
    stables: dict[str, tuple[str, float]]
    generation: int
    strategies: dict[tuple[int, int, str], Strategy] = field(factory=dict, eq=False)
    """Each rollout step's strategy, built once for every device that asks."""

    def strategy(
        self, strategies: RolloutStrategies, rollout: Rollout, step: int | None, name: str
    ) -> Strategy:
        """``name`` with the options of ``step`` (the current one if None) of
        ``rollout``: a step's options never change, and a pass over the
        fleet asks once per device."""
        index = min(rollout.step if step is None else step, len(rollout.steps) - 1)
        key = (rollout.id, index, name)
        found = self.strategies.get(key)
        if found is None:
            found = self.strategies[key] = strategies.get(name, rollout.options(index))
        return found

    def rollout_for(self, role: str) -> Rollout | None:
        for rollout in self.rollouts:
            if rollout.role == role:
                return rollout
            if rollout.role is None and (rollout.roles is None or role in rollout.roles):
                return rollout
        return None

    def stable_for(self, role: str) -> str | None:
        own, every = self.stables.get(role), self.stables.get("*")
        if own and every:
            return own[0] if own[1] >= every[1] else every[0]
        return (own or every or (None, 0.0))[0]


def load_snapshot(conn: Connection, store: Store, generation: int | None = None) -> Snapshot:
    """The fleet-wide state, labelled with the generation read *before* it:
    a change committed meanwhile then shows under an older label, and is
    fetched again (an ETag that no longer matches), never the other way
    round (old data under the new label, hidden behind 304s)."""
    if generation is None:
        generation = store.generation(conn)
    pin_data = store.get_setting(conn, "pin")
    window_data = store.get_setting(conn, "maintenance_window")
    rows = conn.execute(
        sa.select(t.rollouts)
        .where(t.rollouts.c.state.in_(ACTIVE_STATES))
        .order_by(t.rollouts.c.id.desc())
    )
    stables = {r.role: (r.commit, r.at) for r in conn.execute(sa.select(t.stables))}
    return Snapshot(
        pin=structure(pin_data, ForcedVersion, source="pin") if pin_data else None,
        window=structure(window_data, MaintenanceWindow, source="window") if window_data else None,
        rollouts=tuple(Rollout.from_row(r) for r in rows),
        stables=stables,
        generation=generation,
    )


def device_policy(row: Any | None, followed: str | None = None) -> DevicePolicy:
    """A device's policy from its policy row; ``followed`` is the branch its
    agent.toml says to follow, which the operator's override branch beats."""
    if row is None:
        return DevicePolicy(branch=followed)
    lock = None
    if row.lock_commit:
        lock = VersionLock(
            commit=row.lock_commit,
            reason=row.lock_reason or "",
            locked_by=row.locked_by or "",
            locked_until=ts(row.locked_until),
        )
    window = None
    if row.maintenance_window:
        window = structure(json.loads(row.maintenance_window), MaintenanceWindow, source="window")
    return DevicePolicy(
        auto_update=bool(row.auto_update),
        branch=row.branch or followed,
        version_lock=lock,
        maintenance_window=window,
    )


def window_json(window: MaintenanceWindow | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "days": list(window.days),
        "start": window.start.strftime("%H:%M"),
        "end": window.end.strftime("%H:%M"),
        "timezone": window.timezone,
    }


def compute(
    *,
    device: DeviceInfo,
    policy: DevicePolicy,
    snap: Snapshot,
    strategies: RolloutStrategies,
    now: dt.datetime,
    branch_head: Callable[[str], str | None],
    step: int | None = None,
    rollout: Rollout | None = None,
    running: str | None = None,
) -> tuple[DesiredState, Rollout | None]:
    """The device's desired state; ``step``/``rollout`` ask "what if" (progress).
    ``running`` is the commit the device last reported."""
    active = rollout or snap.rollout_for(device.role)
    stable = snap.stable_for(device.role)
    # A halt means exactly that: devices already on the commit keep it, nobody
    # else gets it (a "what if" question about a step asks about the strategy).
    halted = rollout is None and active is not None and active.state == "halted"
    if active is not None:
        options = active.options(step)
        rollout_policy = RolloutPolicy(strategy=active.strategy, stable=stable, options=options)
        head = active.commit
        current = active

        def eligible(name: str, dev: DeviceInfo, commit: str) -> bool:
            if halted and running != commit:
                return False
            return snap.strategy(strategies, current, step, name).eligible(dev, commit)
    else:
        # No rollout: every device of the role runs the last one that finished.
        rollout_policy = RolloutPolicy(strategy="none", stable=stable)
        head = stable or ""

        def eligible(name: str, dev: DeviceInfo, commit: str) -> bool:
            return False

    fleet = FleetPolicy(
        forced_version=snap.pin,
        maintenance_window=snap.window,
        roles={device.role: RolePolicy(rollout=rollout_policy)},
    )
    state = resolve(
        device=device,
        fleet=fleet,
        device_policy=policy,
        head=head,
        now=now,
        eligible=eligible,
        override_head=lambda b: branch_head(b) or "",
    )
    if state.why == "override" and not state.commit:
        state = DesiredState(
            commit=None,
            why="override",
            reason=f"branch {state.branch} is not in the fleet repo",
            branch=state.branch,
            maintenance_window=state.maintenance_window,
        )
    if active is None and state.why in ("stable", "hold"):
        reason = (
            f"last finished rollout for role {device.role}"
            if state.commit
            else f"no rollout has finished for role {device.role} yet; "
            f"start one: {first_rollout_command(device.role)}"
        )
        state = DesiredState(
            commit=state.commit,
            why=state.why,
            reason=reason,
            maintenance_window=state.maintenance_window,
        )
    return state, active


def first_rollout_command(role: str) -> str:
    """What an operator runs so that a new fleet's devices of ``role``
    install something (shown wherever the fleet waits for it)."""
    return f"fleetcore fleet rollout start COMMIT --role {role} --strategy percentage --steps 100"


def desired_json(state: DesiredState, rollout: Rollout | None) -> dict[str, Any]:
    return {
        "commit": state.commit,
        "why": state.why,
        "reason": state.reason,
        "branch": state.branch,
        "maintenance_window": window_json(state.maintenance_window),
        # Only a running rollout: a halted one is not under way for anyone.
        "rollout": rollout.summary()
        if rollout is not None
        and rollout.state == "running"
        and state.why in ("rollout", "stable", "hold")
        else None,
    }


def device_info(row: Any) -> DeviceInfo:
    return DeviceInfo(device_id=row.device_id, role=row.role, segment=row.segment)
