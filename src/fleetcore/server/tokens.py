"""Operator tokens, as admins manage them over the API.

Creating and revoking go through the store's own transactions (with their
audit lines), which ``fleetcore server token`` on the command line uses too.
"""

from __future__ import annotations

from typing import Any

from fleetcore.server import bodies as b
from fleetcore.server.auth import Operator
from fleetcore.server.context import Context
from fleetcore.server.desired import iso
from fleetcore.server.store import EnrollmentScope


class Tokens:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def create(self, op: Operator, req: b.TokenRequest) -> dict[str, Any]:
        op.require("admin")
        now = self.ctx.ts()
        expires_at = req.expires.timestamp() if req.expires is not None else None
        if expires_at is not None and expires_at <= now:
            raise b.ApiError(400, f"expires is in the past: {req.expires}", "expires")
        token_id, token = self.ctx.store.issue_token(
            "operator", req.role, name=req.name, expires_at=expires_at, actor=op.name, now=now
        )
        return {
            "id": token_id,
            "token": token,
            "role": req.role,
            "name": req.name,
            "expires_at": iso(expires_at),
        }

    def create_enrollment(self, op: Operator, req: b.EnrollmentTokenRequest) -> dict[str, Any]:
        """An enrollment token limited to what ``req`` allows; shown this once."""
        op.require("admin")
        now = self.ctx.ts()
        scope = EnrollmentScope(
            segment=req.segment, max_uses=req.max_uses, require_approval=req.require_approval
        )
        token_id, token = self.ctx.store.issue_token(
            "enrollment",
            req.role,
            name=req.name,
            expires_at=now + req.ttl_seconds,
            actor=op.name,
            now=now,
            scope=scope,
        )
        return {
            "id": token_id,
            "token": token,
            "role": req.role,
            "name": req.name,
            "expires_at": iso(now + req.ttl_seconds),
            **scope.detail(),
        }

    def list(self, op: Operator) -> list[dict[str, Any]]:
        op.require("admin")
        return self.ctx.store.list_tokens(self.ctx.ts())

    def revoke(self, op: Operator, token_id: int, req: b.ActionRequest) -> dict[str, Any]:
        """Operator tokens are checked in the database on every request, so
        the token is refused at once here and on every replica. An admin may
        revoke the token they are using: this request still completes."""
        op.require("admin")
        return self.ctx.store.revoke_token(
            token_id, actor=op.name, reason=req.reason, now=self.ctx.ts()
        )
