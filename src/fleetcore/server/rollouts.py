"""Rollouts: operators start them and promote, halt, resume or abort them
(:class:`Rollouts`); the engine moves them on by itself (:func:`tick`).
Progress per step and the arithmetic of the gate are in ``progress.py``.

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

import json
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetcore.errors import ConfigError
from fleetcore.server import alerts as al
from fleetcore.server import bodies as b
from fleetcore.server import schema as t
from fleetcore.server.auth import Operator
from fleetcore.server.context import Change, Context, Moved
from fleetcore.server.desired import Rollout, load_snapshot
from fleetcore.server.progress import (
    current_step,
    gate,
    get_rollout,
    ready,
    rollout_json,
)

log = logging.getLogger("fleetcore.server.rollouts")

ENGINE = "rollout-engine"
ACTIONS = ("promote", "halt", "resume", "abort")
DEFAULT_STEPS: dict[str, list[dict[str, Any]]] = {
    "canary": [
        {"segments": ["canary"]},
        {"segments": ["canary", "early"]},
        {"segments": ["canary", "early", "general"]},
    ],
    "percentage": [{"percent": p} for p in (1, 5, 25, 100)],
}


def _role_scope(role: str | None) -> Any:
    return None if role is None else t.devices.c.role == role


class Rollouts:
    """Operators start rollouts and promote, halt, resume or abort them."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _steps(self, req: b.RolloutRequest) -> list[dict[str, Any]]:
        strategies = self.ctx.strategies
        if req.strategy not in strategies.names():
            installed = ", ".join(strategies.names()) or "none"
            raise b.ApiError(
                400,
                f"unknown rollout strategy {req.strategy!r}; installed: {installed}",
                "strategy",
            )
        if req.role is not None and not b.ID_RE.match(req.role):
            raise b.ApiError(400, f"not a role name: {req.role!r}", "role")
        steps: list[dict[str, Any]]
        if req.steps:
            steps = [{"options": s.options, "wait_seconds": s.wait_seconds} for s in req.steps]
        else:
            defaults = DEFAULT_STEPS.get(req.strategy, [{}])
            steps = [{"options": o, "wait_seconds": req.wait_seconds} for o in defaults]
        for index, step in enumerate(steps):
            try:
                strategies.check(req.strategy, step["options"], f"steps.{index}.options")
            except ConfigError as exc:
                first = exc.problems[0]
                raise b.ApiError(
                    400, "; ".join(exc.problems), first.rpartition(" @ ")[2] or None
                ) from None
        return steps

    def start(self, op: Operator, req: b.RolloutRequest) -> dict[str, Any]:
        op.require("operator")
        steps = self._steps(req)
        commit = self.ctx.resolve_commit(req.commit)
        mirror = self.ctx.mirror
        if req.role is not None and not mirror.has_role(commit, req.role):
            raise b.ApiError(400, f"commit {commit[:12]} has no folder roles/{req.role}", "role")
        roles = mirror.roles(commit)
        if not roles:
            raise b.ApiError(400, f"commit {commit[:12]} has no roles/ folder", "commit")
        tell = Moved("update-available", _role_scope(req.role))
        with self.ctx.change(op.name, tell=tell) as ch:
            same_role = (
                t.rollouts.c.role.is_(None) if req.role is None else t.rollouts.c.role == req.role
            )
            superseded = ch.conn.execute(
                t.rollouts.update()
                .where(same_role, t.rollouts.c.state.in_(("running", "halted")))
                .values(state="superseded", finished_at=ch.at, reason="a newer rollout started")
            ).rowcount
            inserted = ch.conn.execute(
                t.rollouts.insert().values(
                    role=req.role,
                    commit=commit,
                    strategy=req.strategy,
                    steps=json.dumps(steps),
                    step=0,
                    state="running",
                    reason="",
                    threshold=req.threshold,
                    auto_promote=req.auto_promote,
                    created_by=op.name,
                    created_at=ch.at,
                    step_started_at=ch.at,
                    roles=json.dumps(roles),
                )
            ).inserted_primary_key
            assert inserted is not None
            rollout_id = int(inserted[0])
            _decide(ch, rollout_id, "start", 0, f"by {op.name}: {req.reason}".rstrip(": "))
            ch.audit(
                "rollout.start",
                target=str(rollout_id),
                reason=req.reason,
                detail={
                    "commit": commit,
                    "role": req.role,
                    "strategy": req.strategy,
                    "steps": steps,
                    "superseded": superseded,
                },
            )
        with self.ctx.store.connect() as conn:
            return rollout_json(self.ctx, conn, get_rollout(conn, rollout_id))

    def act(self, op: Operator, rollout_id: int, action: str, reason: str) -> dict[str, Any]:
        """An operator's promote, halt, resume or abort; the rollout after it."""
        op.require("operator")
        with self.ctx.store.connect() as conn:
            current = get_rollout(conn, rollout_id)
        tell = Moved("update-available", _role_scope(current.role))
        with self.ctx.change(op.name, tell=tell) as ch:
            apply_action(ch, get_rollout(ch.conn, rollout_id), action, reason)
        with self.ctx.store.connect() as conn:
            return rollout_json(self.ctx, conn, get_rollout(conn, rollout_id))


# -- the engine's moves, each inside a change ----------------------------------------------


def _decide(ch: Change, rollout_id: int, action: str, step: int, detail: str) -> None:
    ch.conn.execute(
        t.decisions.insert().values(
            rollout_id=rollout_id, at=ch.at, action=action, step=step, detail=detail
        )
    )


def _set(conn: Connection, ro: Rollout, **values: Any) -> None:
    conn.execute(t.rollouts.update().where(t.rollouts.c.id == ro.id).values(**values))


def _advance(ch: Change, ro: Rollout, why: str) -> str:
    conn, now = ch.conn, ch.at
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
    _decide(ch, ro.id, action, ro.step + (action == "promote"), f"{ch.actor}: {why}")
    ch.audit(
        f"rollout.{action}",
        target=str(ro.id),
        reason=why,
        detail={"step": ro.step, "commit": ro.commit},
    )
    return action


def apply_action(ch: Change, ro: Rollout, action: str, reason: str) -> None:
    """An operator's (``ch.actor``) promote, halt, resume or abort."""
    actor, conn = ch.actor, ch.conn
    if ro.state not in ("running", "halted"):
        raise b.ApiError(409, f"rollout {ro.id} is {ro.state}; it cannot {action}", "id")
    if action == "promote" and ro.state == "halted":
        raise b.ApiError(409, f"rollout {ro.id} is halted; resume it before promoting", "id")
    if action == "promote":
        _advance(ch, ro, reason or "promoted by hand")
        return
    if action == "halt":
        if ro.state == "halted":
            raise b.ApiError(409, f"rollout {ro.id} is already halted", "id")
        why = f"halted by {actor}: {reason}".rstrip(": ")
        _set(conn, ro, state="halted", reason=why)
        ch.alert(al.rollout_halted(ro, why, ch.at, by_operator=True))
    elif action == "resume":
        if ro.state == "running":
            raise b.ApiError(409, f"rollout {ro.id} is running", "id")
        # The wait starts again: watch the step after whatever fix came.
        _set(conn, ro, state="running", reason="", step_started_at=ch.at)
    elif action == "abort":
        _set(
            conn,
            ro,
            state="aborted",
            finished_at=ch.at,
            reason=f"aborted by {actor}: {reason}".rstrip(": "),
        )
    else:
        raise b.ApiError(404, f"unknown action {action!r}")
    if ro.state == "halted" and action in ("resume", "abort"):
        by_operator = ro.reason.startswith("halted by ")
        ch.alert(al.rollout_resumed(ro, ch.at, halted_by_operator=by_operator))
    _decide(ch, ro.id, action, ro.step, f"{actor}: {reason}".rstrip(": "))
    ch.audit(
        f"rollout.{action}",
        target=str(ro.id),
        reason=reason,
        detail={"step": ro.step, "commit": ro.commit},
    )


def _halt(ch: Change, ro: Rollout, why: str, step: dict[str, Any]) -> None:
    _set(ch.conn, ro, state="halted", reason=why)
    _decide(ch, ro.id, "halt", ro.step, f"{ch.actor}: {why}")
    ch.audit("rollout.halt", target=str(ro.id), reason=why, detail=step)
    ch.alert(al.rollout_halted(ro, why, ch.at, by_operator=False))
    log.warning("rollout %s halted: %s", ro.id, why)


def halt(ch: Change, ro: Rollout, why: str) -> None:
    """Halt a running rollout for blast-radius protection (``ch.actor`` decided)."""
    _halt(ch, ro, why, {"step": ro.step, "commit": ro.commit})


def hold(ch: Change, ro: Rollout, why: str) -> None:
    """Record that a running rollout holds at its step (no promotion) while
    an incident is open; the engine's tick does the holding."""
    _decide(ch, ro.id, "hold", ro.step, f"{ch.actor}: {why}")
    ch.audit("rollout.hold", target=str(ro.id), reason=why, detail={"step": ro.step})


def mark_offline(ctx: Context, conn: Connection) -> list[Any]:
    """Devices silent longer than ``offline_after`` become offline; the rows
    of those that just did (for their alerts)."""
    limit = ctx.ts() - ctx.offline_after
    d = t.devices.c
    return list(
        conn.execute(
            t.devices.update()
            .where(
                d.status != "offline",
                sa.or_(
                    d.last_seen < limit,
                    sa.and_(d.last_seen.is_(None), d.enrolled_at < limit),
                ),
            )
            .values(status="offline")
            .returning(d.device_id, d.role, d.commit, d.last_seen, d.enrolled_at, d.revoked_at)
        )
    )


def _offline_alerts(ctx: Context, gone: list[Any]) -> None:
    now = ctx.ts()
    gone = [row for row in gone if row.revoked_at is None]  # silent on purpose
    if len(gone) > al.OFFLINE_ONE_BY_ONE:
        ctx.alert(al.devices_offline(gone, now))
        return
    for row in gone:
        ctx.alert(al.device_offline(row, now - (row.last_seen or row.enrolled_at), now))


def _pin_lapsed(ctx: Context, conn: Connection) -> dict[str, Any] | None:
    """The pin, when it has expired."""
    pin = ctx.store.get_setting(conn, "pin")
    if pin and pin.get("expires"):
        snap = load_snapshot(conn, ctx.store)
        if snap.pin is not None and not snap.pin.active(ctx.now()):
            return dict(pin)
    return None


def _locks_lapsed(ctx: Context) -> Any:
    return sa.select(t.device_policies.c.device_id).where(
        t.device_policies.c.lock_commit.is_not(None),
        t.device_policies.c.locked_until < ctx.ts(),
    )


def lapse_due(ctx: Context, conn: Connection) -> bool:
    if _pin_lapsed(ctx, conn) is not None:
        return True
    return conn.execute(_locks_lapsed(ctx).limit(1)).first() is not None


def lapse(ctx: Context, ch: Change) -> None:
    """Expired pins and locks lapse by themselves (and say so in the audit log)."""
    pin = _pin_lapsed(ctx, ch.conn)
    if pin is not None:
        ch.conn.execute(t.settings.delete().where(t.settings.c.key == "pin"))
        ch.audit("fleet.pin.expired", target=pin["commit"])
    for (device_id,) in ch.conn.execute(_locks_lapsed(ctx)).all():
        ch.conn.execute(
            t.device_policies.update()
            .where(t.device_policies.c.device_id == device_id)
            .values(lock_commit=None, lock_reason=None, locked_by=None, locked_until=None)
        )
        ch.audit("device.lock.expired", target=device_id)


def tick(ctx: Context, *, hold: bool = False) -> None:
    """One pass of the engine: offline marking, lapsed pins and locks, then
    each running rollout's health gate and promotion (none while ``hold``:
    blast-radius protection has an incident open)."""
    with ctx.store.begin() as conn:
        gone = mark_offline(ctx, conn)
    _offline_alerts(ctx, gone)
    # Telling devices costs two desired-state passes over the fleet: only
    # when something is due, which a cheap read decides first.
    with ctx.store.connect() as conn:
        due = lapse_due(ctx, conn)
    if due:
        with ctx.change(ENGINE, tell=Moved("policy-changed")) as ch:
            lapse(ctx, ch)
    with ctx.store.connect() as conn:
        running = [
            Rollout.from_row(r)
            for r in conn.execute(sa.select(t.rollouts).where(t.rollouts.c.state == "running"))
        ]
        pending = []
        for ro in running:
            step = current_step(ctx, conn, ro)
            promote = not hold and ro.auto_promote and ready(ctx, ro, step)
            if gate(ro, step) is not None or promote:
                pending.append(ro)
    for ro in pending:
        with ctx.change(ENGINE, tell=Moved("update-available", _role_scope(ro.role))) as ch:
            _judge(ctx, ch, ro.id, hold)


def _judge(ctx: Context, ch: Change, rollout_id: int, hold: bool = False) -> None:
    """Halt or promote one rollout, if it is still due, as its state is now."""
    if not ctx.store.sqlite:
        # Replicas sharing one PostgreSQL take turns on each rollout;
        # the state is read again under the lock.
        ch.conn.execute(sa.text("SELECT pg_advisory_xact_lock(7462002, :id)"), {"id": rollout_id})
    current = get_rollout(ch.conn, rollout_id)
    if current.state != "running":
        return
    step = current_step(ctx, ch.conn, current)
    why = gate(current, step)
    if why is not None:
        _halt(ch, current, why, step)
    elif not hold and current.auto_promote and ready(ctx, current, step):
        _advance(
            ch,
            current,
            f"step {current.step} healthy: {step['healthy']} of {step['online']} online "
            f"targeted devices",
        )
