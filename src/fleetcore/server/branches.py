"""Devices that follow a branch instead of rollouts: the staging workflow.

An operator points some devices at a branch (``fleetcore fleet override
DEVICE --branch staging``), or a device's agent.toml does (``[server] branch
= "staging"``); they take each commit pushed there. Before the
branch is merged into ``main`` (and so into a rollout) one wants to know that
every one of them runs the branch head and stays healthy: this module groups
those devices by branch, with how long each has been healthy on the head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetcore.server import schema as t
from fleetcore.server.context import Context, Moved
from fleetcore.server.desired import iso


def branch_groups(ctx: Context, conn: Connection, devices: Sequence[Any]) -> dict[str, Any]:
    """Per branch: its head, its devices (status, commit, healthy on the head
    since when, and ``by``: the operator's override or the device's own
    ``[server] branch``), the commits they run and their health counts."""
    # The operator's override wins over the device's own [server] branch.
    follows = {d.device_id: d.branch for d in devices if d.branch}
    overridden = {
        r.device_id: r.branch
        for r in conn.execute(
            sa.select(t.device_policies.c.device_id, t.device_policies.c.branch).where(
                t.device_policies.c.branch.is_not(None)
            )
        )
    }
    follows.update(overridden)
    if not follows:
        return {}
    by_id = {d.device_id: d for d in devices if d.device_id in follows and d.revoked_at is None}
    heads = ctx.mirror.branches()
    # When each device last took each commit successfully: the start of its
    # time on that commit (a later failure or rollback reports another commit).
    arrived: dict[tuple[str, str], float] = {}
    for device_id, commit, at in conn.execute(
        sa.select(t.history.c.device_id, t.history.c.to_commit, sa.func.max(t.history.c.timestamp))
        .where(t.history.c.device_id.in_(list(by_id)), t.history.c.result == "success")
        .group_by(t.history.c.device_id, t.history.c.to_commit)
    ):
        arrived[(device_id, commit)] = at
    groups: dict[str, Any] = {}
    for device_id, row in sorted(by_id.items()):
        branch = follows[device_id]
        head = heads.get(branch)
        group = groups.setdefault(
            branch, {"head": head, "devices": [], "commits": {}, "health": {}}
        )
        on_head = head is not None and row.commit == head
        since = arrived.get((device_id, row.commit or "")) if on_head else None
        healthy = on_head and row.status == "healthy"
        group["devices"].append(
            {
                "device_id": device_id,
                "role": row.role,
                "status": row.status,
                "commit": row.commit,
                "by": "override" if device_id in overridden else "agent.toml",
                "on_head": on_head,
                "healthy_on_head_since": iso(since) if healthy else None,
                "last_seen": iso(row.last_seen),
            }
        )
        commits = group["commits"]
        commits[row.commit or "none"] = commits.get(row.commit or "none", 0) + 1
        group["health"][row.status] = group["health"].get(row.status, 0) + 1
    for group in groups.values():
        group["commits"] = [
            {"commit": c, "devices": n, "head": c == group["head"]}
            for c, n in sorted(group["commits"].items(), key=lambda kv: -kv[1])
        ]
    return groups


def fetch_repo(ctx: Context) -> dict[str, str]:
    """Fetch the fleet repo (the push hook, the fetch loop). When a branch
    that devices follow moved, bump the generation: their cached desired
    states (ETags) would otherwise answer "not modified" with the old head
    until something else changed. Those devices are told to update."""
    before = dict(ctx.mirror.branches())
    after = ctx.mirror.fetch()
    moved = sorted(b for b in {*before, *after} if before.get(b) != after.get(b))
    if not moved:
        return after
    followers = sa.or_(
        t.devices.c.branch.in_(moved),
        t.devices.c.device_id.in_(
            sa.select(t.device_policies.c.device_id).where(t.device_policies.c.branch.in_(moved))
        ),
    )
    with ctx.store.connect() as conn:
        followed = conn.execute(
            sa.select(sa.func.count()).select_from(t.devices).where(followers)
        ).scalar()
    if followed:
        with ctx.change("fleet repo", tell=Moved("update-available", followers)) as ch:
            for branch in moved:
                ch.audit("branch-moved", target=branch, detail={"head": after.get(branch)})
    return after
