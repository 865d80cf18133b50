"""Where a rollout stands: for each step reached, the devices it targets and
how they fare; the health gate and the promotion rule that read it."""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetcore.server import bodies as b
from fleetcore.server import schema as t
from fleetcore.server.context import Context
from fleetcore.server.desired import Rollout, iso, load_snapshot

FAILED_STATUSES = ("failed", "safe_mode")


def rollout_scope(ro: Rollout) -> Any:
    """The devices a rollout may reach at all."""
    if ro.role is not None:
        return t.devices.c.role == ro.role
    return sa.true() if ro.roles is None else t.devices.c.role.in_(ro.roles)


def step_progress(
    ctx: Context, conn: Connection, ro: Rollout, *, current_only: bool = False
) -> list[dict[str, Any]]:
    """For each step reached (only the current one with ``current_only``):
    targeted, updated, healthy and failed devices.

    Which devices a step targets is the strategy's answer for each device
    in scope, remembered per generation (:meth:`DesiredStates.targeted`);
    the engine, which judges only the current step, asks for that one."""
    snap = load_snapshot(conn, ctx.store)
    # What the strategy and the counts read, no more: fetching whole rows
    # was most of a pass once the targets are remembered.
    c = t.devices.c
    columns = (c.device_id, c.role, c.segment, c.branch, c.commit, c.pending_commit, c.status)
    rows = list(conn.execute(sa.select(*columns).where(rollout_scope(ro))))
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
    last = min(ro.step, len(ro.steps) - 1)
    for step in range(last if current_only else 0, last + 1):
        targeted = updated = healthy = online = 0
        failed: set[str] = set()
        failing: set[str] = set()
        targets = ctx.states.targeted(snap, ro, step, rows, policies)
        for row in rows:
            if row.device_id not in targets:
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


def current_step(ctx: Context, conn: Connection, ro: Rollout) -> dict[str, Any]:
    """The progress of the step a rollout is on."""
    return step_progress(ctx, conn, ro, current_only=True)[-1]


def progress(ctx: Context, conn: Connection, ro: Rollout) -> dict[str, Any]:
    return rollout_json(ctx, conn, ro, detail=False)


def rollout_json(
    ctx: Context, conn: Connection, ro: Rollout, detail: bool = True
) -> dict[str, Any]:
    steps = step_progress(ctx, conn, ro) if ro.state in ("running", "halted") or detail else []
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
        # Every step, reached or not, for pages that show the whole plan.
        data["plan"] = [
            {"step": i, "options": ro.options(i), "wait_seconds": ro.steps[i]["wait_seconds"]}
            for i in range(len(ro.steps))
        ]
        rows = conn.execute(
            sa.select(t.decisions)
            .where(t.decisions.c.rollout_id == ro.id)
            .order_by(t.decisions.c.id)
        )
        data["decisions"] = [
            {"at": iso(d.at), "action": d.action, "step": d.step, "detail": d.detail} for d in rows
        ]
    return data


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


def ready(ctx: Context, ro: Rollout, step: dict[str, Any]) -> bool:
    """Whether the step may be promoted: its wait passed and enough of its
    online targeted devices run the commit healthy."""
    if ctx.ts() - ro.step_started_at < step["wait_seconds"]:
        return False
    if step["targeted"] == 0:
        return True  # nobody in this step (a small fleet at 1%): nothing to wait for
    online = step["online"]
    # All targeted devices silent is no evidence of health: wait for them.
    return online > 0 and step["healthy"] >= math.ceil((1 - ro.threshold) * online - 1e-9)


def get_rollout(conn: Connection, rollout_id: int) -> Rollout:
    row = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.id == rollout_id)).first()
    if row is None:
        raise b.ApiError(404, f"unknown rollout {rollout_id}", "id")
    return Rollout.from_row(row)
