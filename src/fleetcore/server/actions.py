"""Quick actions on one device, from the dashboard or the API: wake it to
check for an update now, and put it in safe mode. Both reach the device
through what it already listens to: its event stream (an
``update-available`` event wakes it) and its desired state (a growing
``safe_mode`` count, like ``resume``, so a device that was asleep still
sees it on its next poll).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from fleetcore.server import bodies as b
from fleetcore.server import schema as t
from fleetcore.server.auth import Operator
from fleetcore.server.context import Context, Moved
from fleetcore.server.events import Event
from fleetcore.server.store import device_row, policy_row


class DeviceActions:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def wake(self, op: Operator, device_id: str, req: b.ActionRequest) -> None:
        """Force an update check: the device runs a cycle at once (within its
        gates: a maintenance window or a lock still hold)."""
        op.require("operator")
        with self.ctx.store.connect() as conn:
            device_row(conn, device_id)
        _, desired = self.ctx.states.desired(device_id)
        with self.ctx.change(op.name, bump=False) as ch:
            ch.audit("device.wake", target=device_id, reason=req.reason)
        self.ctx.publish(
            [
                Event(
                    device_id, "update-available", {"commit": desired.get("commit"), "forced": True}
                )
            ]
        )

    def check_now(self, op: Operator, device_id: str, req: b.ActionRequest) -> None:
        """Ask the device for a deep drift check now; it reports the findings
        right after (its last check shows on its page)."""
        op.require("operator")
        with self.ctx.store.connect() as conn:
            device_row(conn, device_id)
        with self.ctx.change(op.name, bump=False) as ch:
            ch.audit("device.check", target=device_id, reason=req.reason)
        self.ctx.publish([Event(device_id, "check-now", {})])

    def request_logs(self, op: Operator, device_id: str) -> None:
        """Ask the device to upload its recent log lines (``send-logs``)."""
        op.require("operator")
        with self.ctx.store.connect() as conn:
            device_row(conn, device_id)
        self.ctx.publish([Event(device_id, "send-logs", {})])

    def store_logs(self, device_id: str, req: b.LogUpload) -> None:
        """The device's upload replaces its previous one."""
        with self.ctx.store.begin() as conn:
            conn.execute(t.device_logs.delete().where(t.device_logs.c.device_id == device_id))
            conn.execute(
                t.device_logs.insert().values(
                    device_id=device_id,
                    taken_at=req.taken_at,
                    received_at=self.ctx.ts(),
                    lines=json.dumps(req.lines),
                )
            )

    def logs(self, device_id: str) -> dict[str, Any] | None:
        """The latest upload: ``{"taken_at", "lines"}``; None before any."""
        with self.ctx.store.connect() as conn:
            device_row(conn, device_id)
            row = conn.execute(
                sa.select(t.device_logs).where(t.device_logs.c.device_id == device_id)
            ).first()
        if row is None:
            return None
        return {"taken_at": row.taken_at, "lines": json.loads(row.lines)}

    def enter_safe_mode(self, op: Operator, device_id: str, req: b.ActionRequest) -> int:
        """Stop the device's updates until an operator resumes it."""
        op.require("operator")
        where = t.devices.c.device_id == device_id
        with self.ctx.change(op.name, tell=Moved("policy-changed", where, (device_id,))) as ch:
            device_row(ch.conn, device_id)
            row = policy_row(ch.conn, device_id)
            count = int(getattr(row, "safe_mode_holds", 0) or 0) + 1
            if row is None:
                ch.conn.execute(
                    t.device_policies.insert().values(
                        device_id=device_id, auto_update=True, safe_mode_holds=count
                    )
                )
            else:
                ch.conn.execute(
                    t.device_policies.update()
                    .where(t.device_policies.c.device_id == device_id)
                    .values(safe_mode_holds=count)
                )
            ch.audit("device.safe_mode", target=device_id, reason=req.reason)
        return count
