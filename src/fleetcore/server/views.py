"""What operators read: devices, one device, the fleet's status, the audit
log and rollouts. Reads only: nothing here changes anything."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetcore.server import schema as t
from fleetcore.server.bodies import ApiError
from fleetcore.server.branches import branch_groups
from fleetcore.server.context import Context
from fleetcore.server.desired import (
    Rollout,
    Snapshot,
    device_policy,
    first_rollout_command,
    iso,
    load_snapshot,
)
from fleetcore.server.devices import DEVICE_FIELDS, labels_of
from fleetcore.server.progress import get_rollout, progress, rollout_json
from fleetcore.server.store import device_row, policy_row


def device_json(row: Any) -> dict[str, Any]:
    data = {k: getattr(row, k) for k in ("device_id", "role", "segment", "status", *DEVICE_FIELDS)}
    data["last_seen"] = iso(row.last_seen)
    data["enrolled_at"] = iso(row.enrolled_at)
    data["revoked_at"] = iso(row.revoked_at)
    data["labels"] = labels_of(row.labels)
    metrics = json.loads(row.metrics) if row.metrics else {}
    for key in ("network_receive_bytes_per_second", "network_transmit_bytes_per_second"):
        data[key] = metrics.get(key)
    data["containers"] = metrics.get("containers") or []
    data["drift"] = metrics.get("drift")
    data["pending"] = bool(row.pending)
    return data


def label_filter(selectors: list[str]) -> list[tuple[str, str]]:
    """``?label=KEY=VALUE`` (repeatable) -> the labels a device must all have."""
    wanted = []
    for selector in selectors:
        key, sep, value = selector.partition("=")
        if not sep or not key:
            raise ApiError(400, f"label must be KEY=VALUE, got {selector!r}", "label")
        wanted.append((key, value))
    return wanted


def _pinned_by(conn: Connection, commit: str) -> str | None:
    """Who set the pin, from the audit line written with it: the pin's
    own setting keeps only what older servers sharing the database can
    read (they refuse unknown keys)."""
    row = conn.execute(
        sa.select(t.audit.c.actor)
        .where(t.audit.c.action == "fleet.pin", t.audit.c.target == commit)
        .order_by(t.audit.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else str(row.actor)


class Views:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def devices(self, labels: list[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """Every device, or those with all of ``labels`` (key, value)."""
        with self.ctx.store.connect() as conn:
            rows = conn.execute(sa.select(t.devices).order_by(t.devices.c.device_id))
            found = [device_json(r) for r in rows]
        if labels:
            found = [d for d in found if all(d["labels"].get(k) == v for k, v in labels)]
        return found

    def device(self, device_id: str) -> dict[str, Any]:
        with self.ctx.store.connect() as conn:
            row = device_row(conn, device_id)
            policy = device_policy(policy_row(conn, device_id))
            hist = conn.execute(
                sa.select(t.history)
                .where(t.history.c.device_id == device_id)
                .order_by(t.history.c.timestamp.desc())
                .limit(50)
            )
            history = [
                {
                    "timestamp": iso(h.timestamp),
                    "from_commit": h.from_commit,
                    "to_commit": h.to_commit,
                    "result": h.result,
                    "reason": h.reason,
                    "duration_seconds": h.duration_seconds,
                }
                for h in hist
            ]
        _, desired = self.ctx.states.desired(device_id)
        lock = policy.version_lock
        return {
            **device_json(row),
            "desired": desired,
            "policy": {
                "auto_update": policy.auto_update,
                "branch": policy.branch,
                "lock": None
                if lock is None
                else {
                    "commit": lock.commit,
                    "reason": lock.reason,
                    "locked_by": lock.locked_by,
                    "locked_until": lock.locked_until.isoformat() if lock.locked_until else None,
                },
            },
            "history": history,
        }

    def fleet_status(self) -> dict[str, Any]:
        with self.ctx.store.connect() as conn:
            # Only the columns read here and by branch_groups: a pass over a
            # large fleet spends most of its time fetching rows.
            c = t.devices.c
            rows = list(
                conn.execute(
                    sa.select(
                        c.device_id, c.role, c.status, c.commit, c.branch, c.revoked_at, c.last_seen
                    )
                )
            )
            snap = load_snapshot(conn, self.ctx.store)
            hour = t.history.c.timestamp >= self.ctx.ts() - 3600
            recent = conn.execute(
                sa.select(t.history.c.result, sa.func.count())
                .where(hour)
                .group_by(t.history.c.result)
            ).all()
            average = conn.execute(
                sa.select(sa.func.avg(t.history.c.duration_seconds)).where(
                    hour, t.history.c.result == "success", t.history.c.duration_seconds > 0
                )
            ).scalar()
            active = [progress(self.ctx, conn, r) for r in snap.rollouts]
            pinned_by = _pinned_by(conn, snap.pin.commit) if snap.pin else None
            branches = branch_groups(self.ctx, conn, rows)
        total = len(rows)
        by_status: dict[str, int] = {}
        by_commit: dict[str, int] = {}
        by_role: dict[str, int] = {}
        for r in rows:
            by_status[r.status] = by_status.get(r.status, 0) + 1
            by_commit[r.commit or "none"] = by_commit.get(r.commit or "none", 0) + 1
            by_role[r.role] = by_role.get(r.role, 0) + 1
        pin = snap.pin if snap.pin is not None and snap.pin.active(self.ctx.now()) else None
        return {
            "total": total,
            "online": total - by_status.get("offline", 0),
            "by_status": by_status,
            "by_role": by_role,
            "commits": [
                {"commit": c, "devices": n, "share": round(n / total, 4) if total else 0.0}
                for c, n in sorted(by_commit.items(), key=lambda kv: -kv[1])
            ],
            "updates_last_hour": {res: n for res, n in recent},
            # The average time of the last hour's successful updates.
            "update_seconds_last_hour": None if average is None else round(float(average), 1),
            "pin": None
            if pin is None
            else {
                "commit": pin.commit,
                "reason": pin.reason,
                "by": pinned_by,
                "expires": pin.expires.isoformat() if pin.expires else None,
            },
            "stable": {role: c for role, (c, _) in snap.stables.items()},
            "rollouts": active,
            "first_steps": first_steps(snap, by_role, total),
            "branches": branches,
        }

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.ctx.store.connect() as conn:
            rows = conn.execute(sa.select(t.audit).order_by(t.audit.c.id.desc()).limit(limit))
            return [
                {
                    "at": iso(r.at),
                    "actor": r.actor,
                    "action": r.action,
                    "target": r.target,
                    "reason": r.reason,
                    "detail": json.loads(r.detail),
                }
                for r in rows
            ]

    def rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.ctx.store.connect() as conn:
            rows = conn.execute(sa.select(t.rollouts).order_by(t.rollouts.c.id.desc()).limit(limit))
            items = [Rollout.from_row(r) for r in rows]
            return [rollout_json(self.ctx, conn, r, detail=False) for r in items]

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        with self.ctx.store.connect() as conn:
            return rollout_json(self.ctx, conn, get_rollout(conn, rollout_id))


def first_steps(snap: Snapshot, by_role: dict[str, int], total: int) -> list[dict[str, Any]]:
    """What a new fleet waits for, each with the command that does it: no
    device yet, or roles whose devices install nothing because no rollout
    has finished for them and none runs."""
    if not total:
        return [
            {
                "role": None,
                "message": "no device has enrolled yet",
                "command": "fleetcore init agent --device-id ID --role ROLE --repo URL "
                "--server URL, then fleetcore agent enroll --enrollment-token TOKEN",
            }
        ]
    return [
        {
            "role": role,
            "message": f"no rollout has finished for role {role}: its {n} device(s) "
            "install nothing until one does",
            "command": first_rollout_command(role),
        }
        for role, n in sorted(by_role.items())
        if snap.stable_for(role) is None and snap.rollout_for(role) is None
    ]
