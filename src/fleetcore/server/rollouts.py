"""The rollout engine: progress per step, the health gate, promotion.

A rollout moves through its steps (each a set of strategy options, e.g.
``percent = 5`` or ``segments = ["canary", "early"]``). Every few seconds
:func:`tick` looks at each running rollout:

- **health gate** (blast-radius protection): when the devices that failed on
  the rollout's commit exceed ``threshold`` of the step's targeted devices,
  or a device rolled back from that commit while the step's share of
  failures is already at the limit, the rollout halts itself and records
  why. An operator resumes (after a fix) or aborts (devices go back to the
  role's stable commit).
- **promotion**: once the step's wait has passed and at least
  ``1 - threshold`` of its online targeted devices run the commit healthy,
  the next step starts (or the rollout completes: its commit becomes the
  role's stable commit).

Every decision is a row of ``rollout_decisions`` and a line of the audit log.
Time comes from the server's clock, so tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetcore.server import bodies as b
from fleetcore.server import store as t
from fleetcore.server.desired import Rollout, iso, load_snapshot
from fleetcore.server.store import write_audit

if TYPE_CHECKING:
    from fleetcore.server.service import Control

log = logging.getLogger("fleetcore.server.rollouts")

FAILED_STATUSES = ("failed", "safe_mode")
ENGINE = "rollout-engine"


def _scope(ro: Rollout) -> Any:
    if ro.role is not None:
        return t.devices.c.role == ro.role
    return sa.true() if ro.roles is None else t.devices.c.role.in_(ro.roles)


def step_progress(ctl: Control, conn: Connection, ro: Rollout) -> list[dict[str, Any]]:
    """For each step reached: targeted, updated, healthy and failed devices."""
    snap = load_snapshot(conn, ctl.store)
    rows = list(conn.execute(sa.select(t.devices).where(_scope(ro))))
    policies = {p.device_id: p for p in conn.execute(sa.select(t.device_policies))}
    # device -> when the server last heard of a failure on (or rollback from) the commit
    failed_history: dict[str, float] = {}
    for h in conn.execute(
        sa.select(t.history.c.device_id, t.history.c.received_at).where(
            t.history.c.received_at >= ro.created_at,
            sa.or_(
                sa.and_(
                    t.history.c.to_commit == ro.commit,
                    t.history.c.result.in_(("failed", "rollback")),
                ),
                sa.and_(t.history.c.from_commit == ro.commit, t.history.c.result == "rollback"),
            ),
        )
    ):
        failed_history[h.device_id] = max(h.received_at, failed_history.get(h.device_id, 0.0))
    # The gate judges what failed since the step started (or was resumed):
    # an operator who resumes has seen the failures before.
    recent = {d for d, at in failed_history.items() if at >= ro.step_started_at}
    out = []
    for step in range(min(ro.step, len(ro.steps) - 1) + 1):
        targeted = updated = healthy = online = 0
        failed: set[str] = set()
        failing: set[str] = set()
        for row in rows:
            state, _ = ctl._compute(snap, row, policies.get(row.device_id), step=step, rollout=ro)
            if state.why != "rollout":
                continue
            targeted += 1
            if row.status != "offline":
                online += 1
            on_commit = row.commit == ro.commit
            if on_commit:
                updated += 1
                if row.status == "healthy":
                    healthy += 1
            tried = on_commit or row.pending_commit == ro.commit
            failed_now = tried and row.status in FAILED_STATUSES
            if row.device_id in failed_history or failed_now:
                failed.add(row.device_id)
            if row.device_id in recent or failed_now:
                failing.add(row.device_id)
        # A device beyond the step that rolled back from the commit counts too.
        failed |= set(failed_history)
        failing |= recent
        out.append(
            {
                "step": step,
                "options": ro.options(step),
                "wait_seconds": ro.steps[step]["wait_seconds"],
                "targeted": targeted,
                "online": online,
                "updated": updated,
                "healthy": healthy,
                "failed": len(failed),
                "failing": len(failing),
            }
        )
    return out


def progress(ctl: Control, conn: Connection, ro: Rollout) -> dict[str, Any]:
    return rollout_json(ctl, conn, ro, detail=False)


def rollout_json(
    ctl: Control, conn: Connection, ro: Rollout, detail: bool = True
) -> dict[str, Any]:
    steps = step_progress(ctl, conn, ro) if ro.state in ("running", "halted") or detail else []
    data: dict[str, Any] = {
        "id": ro.id,
        "role": ro.role,
        "commit": ro.commit,
        "strategy": ro.strategy,
        "state": ro.state,
        "reason": ro.reason,
        "step": ro.step,
        "steps": len(ro.steps),
        "options": ro.options(),
        "threshold": ro.threshold,
        "auto_promote": ro.auto_promote,
        "created_by": ro.created_by,
        "created_at": iso(ro.created_at),
        "step_started_at": iso(ro.step_started_at),
        "finished_at": iso(ro.finished_at),
        "progress": steps,
    }
    if detail:
        rows = conn.execute(
            sa.select(t.decisions)
            .where(t.decisions.c.rollout_id == ro.id)
            .order_by(t.decisions.c.id)
        )
        data["decisions"] = [
            {"at": iso(d.at), "action": d.action, "step": d.step, "detail": d.detail} for d in rows
        ]
    return data


def _set(conn: Connection, ro: Rollout, **values: Any) -> None:
    conn.execute(t.rollouts.update().where(t.rollouts.c.id == ro.id).values(**values))


def _advance(ctl: Control, conn: Connection, ro: Rollout, actor: str, why: str) -> str:
    now = ctl.ts()
    if ro.step + 1 >= len(ro.steps):
        _set(conn, ro, state="completed", finished_at=now, reason=why)
        # Stable per role: a rollout to every role is stable only for the
        # roles its commit has.
        for role in [ro.role] if ro.role else list(ro.roles or ("*",)):
            updated = conn.execute(
                t.stables.update()
                .where(t.stables.c.role == role)
                .values(commit=ro.commit, rollout_id=ro.id, at=now)
            ).rowcount
            if not updated:
                conn.execute(
                    t.stables.insert().values(role=role, commit=ro.commit, rollout_id=ro.id, at=now)
                )
        action = "complete"
    else:
        _set(conn, ro, step=ro.step + 1, step_started_at=now, reason="")
        action = "promote"
    ctl._decide(conn, ro.id, action, ro.step + (action == "promote"), f"{actor}: {why}")
    write_audit(
        conn,
        actor=actor,
        action=f"rollout.{action}",
        target=str(ro.id),
        reason=why,
        detail={"step": ro.step, "commit": ro.commit},
        at=now,
    )
    ctl.store.bump_generation(conn)
    return action


def apply_action(
    ctl: Control, conn: Connection, ro: Rollout, action: str, *, actor: str, reason: str
) -> None:
    """An operator's promote, halt, resume or abort."""
    now = ctl.ts()
    if ro.state not in ("running", "halted"):
        raise b.ApiError(409, f"rollout {ro.id} is {ro.state}; it cannot {action}", "id")
    if action == "promote" and ro.state == "halted":
        raise b.ApiError(409, f"rollout {ro.id} is halted; resume it before promoting", "id")
    if action == "promote":
        _advance(ctl, conn, ro, actor, reason or "promoted by hand")
        return
    if action == "halt":
        if ro.state == "halted":
            raise b.ApiError(409, f"rollout {ro.id} is already halted", "id")
        _set(conn, ro, state="halted", reason=f"halted by {actor}: {reason}".rstrip(": "))
    elif action == "resume":
        if ro.state == "running":
            raise b.ApiError(409, f"rollout {ro.id} is running", "id")
        # The wait starts again: watch the step after whatever fix came.
        _set(conn, ro, state="running", reason="", step_started_at=now)
    elif action == "abort":
        _set(
            conn,
            ro,
            state="aborted",
            finished_at=now,
            reason=f"aborted by {actor}: {reason}".rstrip(": "),
        )
    else:
        raise b.ApiError(404, f"unknown action {action!r}")
    ctl._decide(conn, ro.id, action, ro.step, f"{actor}: {reason}".rstrip(": "))
    write_audit(
        conn,
        actor=actor,
        action=f"rollout.{action}",
        target=str(ro.id),
        reason=reason,
        detail={"step": ro.step, "commit": ro.commit},
        at=now,
    )
    ctl.store.bump_generation(conn)


def gate(ro: Rollout, step: dict[str, Any]) -> str | None:
    """Why the health gate halts this step, or None."""
    targeted, failed = step["targeted"], step["failing"]
    if not failed:
        return None
    share = failed / max(targeted, 1)
    if share > ro.threshold:
        return (
            f"health gate: {failed} of {targeted} targeted devices failed on {ro.commit[:12]} "
            f"({share:.0%} > {ro.threshold:.0%})"
        )
    return None


def ready(ctl: Control, ro: Rollout, step: dict[str, Any]) -> bool:
    if ctl.ts() - ro.step_started_at < step["wait_seconds"]:
        return False
    if step["targeted"] == 0:
        return True  # nobody in this step (a small fleet at 1%): nothing to wait for
    online = step["online"]
    # All targeted devices silent is no evidence of health: wait for them.
    return online > 0 and step["healthy"] >= math.ceil((1 - ro.threshold) * online - 1e-9)


def mark_offline(ctl: Control, conn: Connection) -> int:
    limit = ctl.ts() - ctl.offline_after
    return int(
        conn.execute(
            t.devices.update()
            .where(
                t.devices.c.status != "offline",
                sa.or_(
                    t.devices.c.last_seen < limit,
                    sa.and_(t.devices.c.last_seen.is_(None), t.devices.c.enrolled_at < limit),
                ),
            )
            .values(status="offline")
        ).rowcount
    )


def lapse_due(ctl: Control, conn: Connection) -> bool:
    now = ctl.now()
    pin = ctl.store.get_setting(conn, "pin")
    if pin and pin.get("expires"):
        snap = load_snapshot(conn, ctl.store)
        if snap.pin is not None and not snap.pin.active(now):
            return True
    return (
        conn.execute(
            sa.select(t.device_policies.c.device_id)
            .where(
                t.device_policies.c.lock_commit.is_not(None),
                t.device_policies.c.locked_until < now.timestamp(),
            )
            .limit(1)
        ).first()
        is not None
    )


def lapse(ctl: Control, conn: Connection) -> bool:
    """Expired pins and locks lapse by themselves (and say so in the audit log)."""
    now = ctl.now()
    changed = False
    pin = ctl.store.get_setting(conn, "pin")
    if pin and pin.get("expires"):
        snap = load_snapshot(conn, ctl.store)
        if snap.pin is not None and not snap.pin.active(now):
            conn.execute(t.settings.delete().where(t.settings.c.key == "pin"))
            write_audit(
                conn,
                actor=ENGINE,
                action="fleet.pin.expired",
                target=pin["commit"],
                at=now.timestamp(),
            )
            changed = True
    expired = conn.execute(
        sa.select(t.device_policies.c.device_id).where(
            t.device_policies.c.lock_commit.is_not(None),
            t.device_policies.c.locked_until < now.timestamp(),
        )
    ).all()
    for (device_id,) in expired:
        conn.execute(
            t.device_policies.update()
            .where(t.device_policies.c.device_id == device_id)
            .values(lock_commit=None, lock_reason=None, locked_by=None, locked_until=None)
        )
        write_audit(
            conn, actor=ENGINE, action="device.lock.expired", target=device_id, at=now.timestamp()
        )
        changed = True
    if changed:
        ctl.store.bump_generation(conn)
    return changed


def tick(ctl: Control) -> None:
    """One pass of the engine: offline marking, lapsed pins and locks, then
    each running rollout's health gate and promotion."""
    with ctl.store.begin() as conn:
        mark_offline(ctl, conn)
    # Telling devices costs two desired-state passes over the fleet: only
    # when something is due, which a cheap read decides first.
    with ctl.store.connect() as conn:
        due = lapse_due(ctl, conn)
    if due:
        with ctl.notifying("policy-changed"), ctl.store.begin() as conn:
            lapse(ctl, conn)
    with ctl.store.connect() as conn:
        running = [
            Rollout.from_row(r)
            for r in conn.execute(sa.select(t.rollouts).where(t.rollouts.c.state == "running"))
        ]
        pending = []
        for ro in running:
            step = step_progress(ctl, conn, ro)[-1]
            if gate(ro, step) is not None or (ro.auto_promote and ready(ctl, ro, step)):
                pending.append(ro)
    for ro in pending:
        scope = None if ro.role is None else t.devices.c.role == ro.role
        with ctl.notifying("update-available", scope), ctl.store.begin() as conn:
            if not ctl.store.sqlite:
                # Replicas sharing one PostgreSQL take turns on each rollout;
                # the state is read again under the lock.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7462002, :id)"), {"id": ro.id})
            current = Rollout.from_row(
                conn.execute(sa.select(t.rollouts).where(t.rollouts.c.id == ro.id)).one()
            )
            if current.state != "running":
                continue
            steps = step_progress(ctl, conn, current)
            step = steps[-1]
            why = gate(current, step)
            if why is not None:
                _set(conn, current, state="halted", reason=why)
                ctl._decide(conn, current.id, "halt", current.step, f"{ENGINE}: {why}")
                write_audit(
                    conn,
                    actor=ENGINE,
                    action="rollout.halt",
                    target=str(current.id),
                    reason=why,
                    detail=step,
                    at=ctl.ts(),
                )
                ctl.store.bump_generation(conn)
                log.warning("rollout %s halted: %s", current.id, why)
            elif current.auto_promote and ready(ctl, current, step):
                _advance(
                    ctl,
                    conn,
                    current,
                    ENGINE,
                    f"step {current.step} healthy: {step['healthy']} of {step['online']} online "
                    f"targeted devices",
                )


async def run_engine(ctl: Control, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.to_thread(tick, ctl)
        except Exception:
            log.exception("rollout engine tick failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
