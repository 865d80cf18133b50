"""Enrollment that cannot take a device over.

An enrollment token admits *new* device ids, within its scope (device role,
segment, number of uses, lifetime). An id that is already enrolled gets a
new credential only

- from the device itself, proving it holds its current credential
  (:meth:`Enrollment.rotate`, ``fleetcore agent enroll --rotate``), or
- with an enrollment token once an admin allowed it for that id
  (:meth:`Enrollment.allow_reenroll`): one use, expiring.

Anything else is refused with 409 and written to the audit log, and the real
device's credential keeps working. A token made with ``require_approval``
enrolls devices as *pending*: they may report, but get no desired state, no
archives and no secrets until an admin accepts them.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from fleetcore.server import bodies as b
from fleetcore.server import schema as t
from fleetcore.server.auth import Auth, Caller, DeviceCaller, Operator
from fleetcore.server.context import Change, Context
from fleetcore.server.desired import iso
from fleetcore.server.devices import labels_text
from fleetcore.server.store import device_row, hash_secret, new_secret, write_audit

MAX_APPROVAL_SECONDS = 7 * 86400.0


class Enrollment:
    def __init__(self, ctx: Context, auth: Auth) -> None:
        self.ctx = ctx
        self.auth = auth

    # -- enrolling with a token -------------------------------------------------------

    def enroll(self, req: b.EnrollRequest) -> dict[str, Any]:
        credential = new_secret("fcd")
        refusal: tuple[b.ApiError, str] | None = None
        pending = False
        # No generation bump for a new device: nobody else's desired state
        # moves, and a bump would make every poll of the fleet miss its ETag
        # for as long as an enrollment storm lasts. A re-enrollment may
        # change the device's role, and the device may hold an ETag: bump.
        with self.ctx.change(bump=False) as ch:
            tok = self._token(ch, req)
            actor = f"enrollment:{tok.name}"
            existing = ch.conn.execute(
                sa.select(t.devices.c.device_id, t.devices.c.pending).where(
                    t.devices.c.device_id == req.device_id
                )
            ).first()
            if existing is not None and not self._use_approval(ch, req.device_id):
                refusal = (
                    b.ApiError(
                        409,
                        f"device {req.device_id} is already enrolled: an enrollment token "
                        "cannot replace its credential. The device rotates it with its "
                        "current one (`fleetcore agent enroll --rotate`), or an admin allows "
                        f"one re-enrollment (`fleetcore fleet device allow-reenroll "
                        f"{req.device_id} --reason ...`)",
                        "device_id",
                    ),
                    actor,
                )
            else:
                pending = self._write(ch, req, credential, existing, bool(tok.require_approval))
                if existing is not None:
                    self.ctx.store.bump_generation(ch.conn)
                detail: dict[str, Any] = {"role": req.role, "segment": req.segment}
                if req.branch is not None:
                    detail["branch"] = req.branch
                if req.labels is not None:
                    detail["labels"] = req.labels
                if pending:
                    detail["pending"] = True
                action = "device.enroll" if existing is None else "device.reenroll"
                ch.audit(action, actor=actor, target=req.device_id, detail=detail)
                # Last: every enrollment with this token updates the same row,
                # and its lock is held until the commit. Taken first, it made
                # a fleet enrolling at once wait on each other's whole writes.
                self._count_use(ch, tok)
        if refusal is not None:
            error, actor = refusal
            # Its own transaction: the refusal is on the record although the
            # enrollment is not, and nothing else moves (no generation bump).
            with self.ctx.store.begin() as conn:
                write_audit(
                    conn,
                    actor=actor,
                    action="device.enroll.refused",
                    target=req.device_id,
                    reason="already enrolled; no re-enrollment approval",
                    detail={"role": req.role, "segment": req.segment, "hostname": req.hostname},
                    at=self.ctx.ts(),
                )
            raise error
        # A re-enrollment replaces the device's credential: forget its old one
        # (only its own: an enrollment storm must not empty everyone's). A new
        # device has none to forget, here or on a replica.
        if existing is not None:
            self.auth.forget(req.device_id)
        return {"device_id": req.device_id, "credential": credential, "pending": pending}

    def _token(self, ch: Change, req: b.EnrollRequest) -> Any:
        """The enrollment token, checked against the request's scope."""
        tok = ch.conn.execute(
            sa.select(t.tokens).where(
                t.tokens.c.token_hash == hash_secret(req.enrollment_token),
                t.tokens.c.kind == "enrollment",
            )
        ).first()
        if tok is None or tok.revoked or (tok.expires_at and tok.expires_at < ch.at):
            raise b.ApiError(401, "unknown or expired enrollment token", "enrollment_token")
        if tok.role is not None and req.role != tok.role:
            raise b.ApiError(
                403, f"this enrollment token enrolls role {tok.role!r}, not {req.role!r}", "role"
            )
        if tok.segment is not None and req.segment != tok.segment:
            raise b.ApiError(
                403,
                f"this enrollment token enrolls segment {tok.segment!r}, not {req.segment!r}",
                "segment",
            )
        if tok.max_uses is not None and tok.uses >= tok.max_uses:
            raise b.ApiError(
                403,
                f"this enrollment token was used {tok.uses} of {tok.max_uses} times",
                "enrollment_token",
            )
        return tok

    @staticmethod
    def _count_use(ch: Change, tok: Any) -> None:
        # Conditional: of two enrollments racing for a token's last use, one wins.
        query = t.tokens.update().where(t.tokens.c.id == tok.id)
        if tok.max_uses is not None:
            query = query.where(t.tokens.c.uses < tok.max_uses)
        if ch.conn.execute(query.values(uses=t.tokens.c.uses + 1)).rowcount == 0:
            raise b.ApiError(
                403, f"this enrollment token was used {tok.max_uses} times", "enrollment_token"
            )

    @staticmethod
    def _use_approval(ch: Change, device_id: str) -> bool:
        """Use up an admin's re-enrollment approval for the id, if one holds."""
        gone = ch.conn.execute(
            t.reenroll_approvals.delete().where(
                t.reenroll_approvals.c.device_id == device_id,
                t.reenroll_approvals.c.expires_at >= ch.at,
            )
        ).rowcount
        return bool(gone)

    @staticmethod
    def _write(
        ch: Change, req: b.EnrollRequest, credential: str, existing: Any, approval: bool
    ) -> bool:
        """Insert or replace the device's row; whether it is pending."""
        values: dict[str, Any] = {
            "role": req.role,
            "segment": req.segment,
            "hostname": req.hostname or None,
            "credential_hash": hash_secret(credential),
            "revoked_at": None,
        }
        if req.labels is not None:
            values["labels"] = labels_text(req.labels)
        values["branch"] = req.branch
        if existing is None:
            ch.conn.execute(
                t.devices.insert().values(
                    device_id=req.device_id,
                    enrolled_at=ch.at,
                    status="unknown",
                    pending=approval,
                    **values,
                )
            )
            return approval
        # Approved by an admin for this id: the old credential stops working
        # in this same transaction; a pending device stays pending.
        ch.conn.execute(
            t.devices.update().where(t.devices.c.device_id == req.device_id).values(**values)
        )
        return bool(existing.pending)

    # -- the device itself ----------------------------------------------------------------

    def rotate(self, caller: Caller, device_id: str) -> dict[str, Any]:
        """A new credential for the device that proves it holds the current one."""
        if not isinstance(caller, DeviceCaller) or caller.device_id != device_id:
            raise b.ApiError(403, "only the device itself rotates its credential", "device_id")
        credential = new_secret("fcd")
        with self.ctx.change(f"device:{device_id}", bump=False) as ch:
            ch.conn.execute(
                t.devices.update()
                .where(t.devices.c.device_id == device_id)
                .values(credential_hash=hash_secret(credential))
            )
            ch.audit("device.rotate", target=device_id)
        self.auth.forget(device_id)
        return {"device_id": device_id, "credential": credential}

    # -- admins -------------------------------------------------------------------------

    def allow_reenroll(
        self, op: Operator, device_id: str, req: b.ReenrollRequest
    ) -> dict[str, Any]:
        """Let the next enrollment of ``device_id`` (with a valid enrollment
        token) replace its credential, once, within ``req.ttl_seconds``."""
        op.require("admin")
        with self.ctx.change(op.name, bump=False) as ch:
            device_row(ch.conn, device_id)
            expires_at = ch.at + req.ttl_seconds
            ch.conn.execute(
                t.reenroll_approvals.delete().where(t.reenroll_approvals.c.device_id == device_id)
            )
            ch.conn.execute(
                t.reenroll_approvals.insert().values(
                    device_id=device_id,
                    expires_at=expires_at,
                    approved_by=op.name,
                    reason=req.reason,
                    created_at=ch.at,
                )
            )
            ch.audit(
                "device.allow-reenroll",
                target=device_id,
                reason=req.reason,
                detail={"expires_at": iso(expires_at)},
            )
        return {"device_id": device_id, "expires_at": iso(expires_at)}

    def accept(self, op: Operator, device_id: str, req: b.ActionRequest) -> dict[str, Any]:
        """A pending device becomes a member of the fleet: desired state,
        archives and secrets from its next request on."""
        op.require("admin")
        with self.ctx.change(op.name) as ch:
            row = device_row(ch.conn, device_id)
            if not row.pending:
                raise b.ApiError(409, f"device {device_id} is not pending", "device_id")
            ch.conn.execute(
                t.devices.update().where(t.devices.c.device_id == device_id).values(pending=False)
            )
            ch.audit("device.accept", target=device_id, reason=req.reason)
        self.auth.forget(device_id)
        return {"device_id": device_id, "pending": False}
