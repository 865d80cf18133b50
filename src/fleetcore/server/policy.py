"""Fleet policy that operators set: the fleet's pin and maintenance window;
a device's lock, override and resume. Each is one :meth:`Context.change`
that tells the devices it moved."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Connection

from fleetcore.errors import FetchError
from fleetcore.server import bodies as b
from fleetcore.server import schema as t
from fleetcore.server.auth import Operator
from fleetcore.server.context import Context, Everyone, Moved
from fleetcore.server.desired import iso, window_json
from fleetcore.server.store import device_row, policy_row


def _policy(conn: Connection, device_id: str) -> Any:
    """The device's policy row as it was (None if it had none); a row exists after."""
    device_row(conn, device_id)
    row = policy_row(conn, device_id)
    if row is None:
        conn.execute(t.device_policies.insert().values(device_id=device_id, auto_update=True))
    return row


def _set_policy(conn: Connection, device_id: str, **values: Any) -> None:
    _policy(conn, device_id)
    conn.execute(
        t.device_policies.update()
        .where(t.device_policies.c.device_id == device_id)
        .values(**values)
    )


def _one_device(kind: str, device_id: str) -> Moved:
    return Moved(kind, t.devices.c.device_id == device_id, (device_id,))


class Policy:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def _known_device(self, device_id: str) -> None:
        with self.ctx.store.connect() as conn:
            device_row(conn, device_id)

    # -- fleet-wide -----------------------------------------------------------------------

    def pin(self, op: Operator, req: b.PinRequest) -> dict[str, Any]:
        op.require("admin")
        commit = self.ctx.resolve_commit(req.commit)
        value = {"commit": commit, "reason": req.reason}
        if req.expires is not None:
            value["expires"] = req.expires.isoformat()
        tell = Everyone("policy-changed", {"commit": commit, "why": "pin"})
        with self.ctx.change(op.name, tell=tell) as ch:
            self.ctx.store.set_setting(ch.conn, "pin", value)
            ch.audit("fleet.pin", target=commit, reason=req.reason, detail=value)
        return value

    def unpin(self, op: Operator, req: b.ActionRequest) -> None:
        op.require("admin")
        tell = Everyone("policy-changed", {"why": "unpin"})
        with self.ctx.change(op.name, tell=tell) as ch:
            old = self.ctx.store.get_setting(ch.conn, "pin")
            if old is None:
                raise b.ApiError(409, "the fleet is not pinned")
            ch.conn.execute(t.settings.delete().where(t.settings.c.key == "pin"))
            ch.audit("fleet.unpin", target=old["commit"], reason=req.reason)

    def set_window(self, op: Operator, req: b.WindowRequest) -> dict[str, Any] | None:
        """The fleet's maintenance window (a device's own one wins)."""
        op.require("admin")
        value = window_json(req.maintenance_window)
        tell = Everyone("policy-changed", {"why": "maintenance-window"})
        with self.ctx.change(op.name, tell=tell) as ch:
            if value is None:
                ch.conn.execute(t.settings.delete().where(t.settings.c.key == "maintenance_window"))
            else:
                self.ctx.store.set_setting(ch.conn, "maintenance_window", value)
            ch.audit(
                "fleet.maintenance_window",
                reason=req.reason,
                detail={"maintenance_window": value},
            )
        return value

    # -- one device -----------------------------------------------------------------------

    def lock(self, op: Operator, device_id: str, req: b.LockRequest) -> None:
        op.require("admin")
        self._known_device(device_id)
        commit = self.ctx.resolve_commit(req.commit)
        with self.ctx.change(op.name, tell=_one_device("policy-changed", device_id)) as ch:
            until = req.until.timestamp() if req.until else None
            _set_policy(
                ch.conn,
                device_id,
                lock_commit=commit,
                lock_reason=req.reason,
                locked_by=op.name,
                locked_until=until,
            )
            ch.audit(
                "device.lock",
                target=device_id,
                reason=req.reason,
                detail={"commit": commit, "until": iso(until)},
            )

    def unlock(self, op: Operator, device_id: str, req: b.ActionRequest) -> None:
        op.require("admin")
        with self.ctx.change(op.name, tell=_one_device("policy-changed", device_id)) as ch:
            row = _policy(ch.conn, device_id)
            if row is None or not row.lock_commit:
                raise b.ApiError(409, f"device {device_id} is not locked", "device_id")
            _set_policy(
                ch.conn,
                device_id,
                lock_commit=None,
                lock_reason=None,
                locked_by=None,
                locked_until=None,
            )
            ch.audit("device.unlock", target=device_id, reason=req.reason)

    def resume(self, op: Operator, device_id: str, req: b.ActionRequest) -> int:
        """Let a device in safe mode attempt updates again (it sees the count grow)."""
        op.require("operator")
        self._known_device(device_id)
        with self.ctx.change(op.name, tell=_one_device("policy-changed", device_id)) as ch:
            row = _policy(ch.conn, device_id)
            count = int(getattr(row, "resumes", 0) or 0) + 1
            _set_policy(ch.conn, device_id, resumes=count)
            ch.audit("device.resume", target=device_id, reason=req.reason)
        return count

    def override(self, op: Operator, device_id: str, req: b.OverrideRequest) -> None:
        op.require("admin")
        values: dict[str, Any] = {}
        if req.clear:
            values = {"branch": None, "auto_update": True, "maintenance_window": None}
        if req.branch is not None:
            if req.branch:
                self._known_branch(req.branch)
            values["branch"] = req.branch or None
        if req.auto_update is not None:
            values["auto_update"] = req.auto_update
        if req.maintenance_window is not None:
            values["maintenance_window"] = json.dumps(window_json(req.maintenance_window))
        if not values:
            raise b.ApiError(400, "nothing to change: give branch, auto_update or clear")
        with self.ctx.change(op.name, tell=_one_device("policy-changed", device_id)) as ch:
            _set_policy(ch.conn, device_id, **values)
            ch.audit("device.override", target=device_id, reason=req.reason, detail=values)

    def _known_branch(self, branch: str) -> None:
        mirror = self.ctx.mirror
        if branch in mirror.branches():
            return
        try:
            mirror.fetch()
        except FetchError as exc:
            raise b.ApiError(502, f"cannot fetch the fleet repo: {exc}", "branch") from None
        if branch not in mirror.branches():
            raise b.ApiError(400, f"unknown branch {branch!r}", "branch")
