"""``fleetcore server run --initial-release REF``: a new fleet installs at once.

Managed devices run the last rollout that finished for their role; a new
fleet has none, so its devices wait for an operator. With an initial
release, the server records REF as a finished one-step rollout (100 % of
devices) for every role of that commit that has neither a finished rollout
nor one under way. It is an ordinary rollout row with its decision and
audit entry, so `fleetcore fleet rollout list` and the dashboard show where
the first release came from; on a fleet that has its releases already it
does nothing, so the flag can stay in a service definition.
"""

from __future__ import annotations

import json
import logging

import sqlalchemy as sa

from fleetcore.server import schema as t
from fleetcore.server.context import Context, Moved
from fleetcore.server.desired import load_snapshot

log = logging.getLogger("fleetcore.server")

ACTOR = "initial-release"


def initial_release(ctx: Context, ref: str) -> int | None:
    """Record ``ref`` (a branch, tag or commit of the fleet repo) as the
    finished release of every role that has none; the rollout's id, or None
    when every role of the commit has one already. Raises the server's
    ApiError when ``ref`` is not in the fleet repo."""
    commit = ctx.resolve_commit(ref, field="--initial-release")
    roles = ctx.mirror.roles(commit)
    with ctx.change(ACTOR, tell=Moved("update-available")) as ch:
        snap = load_snapshot(ch.conn, ctx.store)
        waiting = [r for r in roles if snap.stable_for(r) is None and snap.rollout_for(r) is None]
        if not waiting:
            return None
        steps = [{"options": {"percent": 100}, "wait_seconds": 0}]
        inserted = ch.conn.execute(
            t.rollouts.insert().values(
                role=None,
                commit=commit,
                strategy="percentage",
                steps=json.dumps(steps),
                step=0,
                state="completed",
                reason=f"initial release {ref}",
                threshold=1.0,
                auto_promote=True,
                created_by=ACTOR,
                created_at=ch.at,
                step_started_at=ch.at,
                finished_at=ch.at,
                roles=json.dumps(waiting),
            )
        ).inserted_primary_key
        assert inserted is not None
        rollout_id = int(inserted[0])
        for role in waiting:
            ch.conn.execute(sa.delete(t.stables).where(t.stables.c.role == role))
            ch.conn.execute(
                t.stables.insert().values(role=role, commit=commit, rollout_id=rollout_id, at=ch.at)
            )
        detail = f"{ACTOR}: {ref} for role(s) {', '.join(waiting)}"
        ch.conn.execute(
            t.decisions.insert().values(
                rollout_id=rollout_id, at=ch.at, action="complete", step=0, detail=detail
            )
        )
        ch.audit(
            "rollout.initial-release",
            target=str(rollout_id),
            reason=f"server run --initial-release {ref}",
            detail={"commit": commit, "roles": waiting},
        )
    log.info("initial release %s (%s) for role(s) %s", ref, commit[:12], ", ".join(waiting))
    return rollout_id
