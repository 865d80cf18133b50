"""Who is asking: operator tokens (checked in the database on every request)
and device credentials (remembered briefly for the status and poll paths),
and what each may touch."""

from __future__ import annotations

import logging
import random

import sqlalchemy as sa
from attrs import frozen
from sqlalchemy.engine import Connection

from fleetcore.server import bodies as b
from fleetcore.server import schema as t
from fleetcore.server.context import Context
from fleetcore.server.events import Event
from fleetcore.server.store import device_row, hash_secret

log = logging.getLogger("fleetcore.server.auth")

ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}

CREDENTIAL_TTL = 600.0
"""Seconds a device credential stays in memory. Every change that
invalidates one drops it at once: on this server directly, on its replicas
through the relay (and a replica that lost the relay forgets every
credential when it reconnects), so the time only bounds memory and what a
lost note could cost. It is longer than the report interval: a fleet that
reports every minute must not miss the cache on every request. Each entry
lives a random time between half of it and all of it: entries made together
(an enrollment wave, a restart) must not all lapse in the same second and
send a whole fleet to the database at once."""
FORGET_CREDENTIAL = "server:forget-credential"
"""The relayed note that tells the other replicas to forget a device's credentials."""

_DEVICE_BY_CREDENTIAL = sa.select(t.devices.c.device_id, t.devices.c.pending).where(
    t.devices.c.credential_hash == sa.bindparam("digest")
)
_OPERATOR_BY_TOKEN = sa.select(t.tokens).where(
    t.tokens.c.token_hash == sa.bindparam("digest"), t.tokens.c.kind == "operator"
)
"""Both built once: composing a statement cost more CPU than running it,
and every request not answered from memory asks one or both."""


@frozen
class Operator:
    name: str
    role: str

    def require(self, role: str) -> None:
        if ROLE_RANK[self.role] < ROLE_RANK[role]:
            raise b.ApiError(403, f"this needs a token with role {role}; yours is {self.role}")


@frozen
class DeviceCaller:
    device_id: str
    pending: bool = False
    """Enrolled, not yet accepted by an admin: it may report, nothing more."""

    def require_accepted(self) -> None:
        if self.pending:
            raise b.ApiError(
                403,
                f"device {self.device_id} is pending an admin's acceptance "
                f"(`fleetcore fleet device accept {self.device_id}`)",
                "device_id",
            )


Caller = Operator | DeviceCaller


def operator(caller: Caller, role: str = "viewer") -> Operator:
    """The caller as an operator with at least ``role``, or a 403."""
    if not isinstance(caller, Operator):
        raise b.ApiError(403, "devices cannot use the operator API")
    caller.require(role)
    return caller


def _digest(header: str | None) -> str | None:
    scheme, _, secret = (header or "").partition(" ")
    return hash_secret(secret.strip()) if scheme.lower() == "bearer" else None


class Auth:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._credentials: dict[str, tuple[str, float]] = {}
        self._digests: dict[str, set[str]] = {}
        """Each device's remembered credential digests, to forget one device fast."""
        self._ttl = CREDENTIAL_TTL
        if ctx.relay is not None:
            ctx.relay.subscribe(FORGET_CREDENTIAL, lambda device_id, _data: self._forget(device_id))
            ctx.relay.on_connect(self._forget)
        self._epoch = 0
        """Grows whenever credentials are revoked or replaced here: a lookup
        that began before then must not put what it read into memory."""

    operator = staticmethod(operator)

    def authenticate(self, header: str | None, conn: Connection | None = None) -> Caller:
        scheme, _, secret = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise b.ApiError(401, "missing credential: send 'Authorization: Bearer <token>'")
        return self.caller_for(secret.strip(), conn)

    def caller_for(self, secret: str, conn: Connection | None = None) -> Caller:
        if conn is None:
            with self.ctx.store.connect() as own:
                return self.caller_for(secret, own)
        digest = hash_secret(secret)
        row = conn.execute(_DEVICE_BY_CREDENTIAL, {"digest": digest}).first()
        if row is not None:
            return DeviceCaller(row.device_id, bool(row.pending))
        tok = conn.execute(_OPERATOR_BY_TOKEN, {"digest": digest}).first()
        if tok is None or tok.revoked or (tok.expires_at and tok.expires_at < self.ctx.ts()):
            raise b.ApiError(401, "unknown, expired or revoked credential")
        return Operator(tok.name, tok.role)

    def device_access(
        self, caller: Caller, device_id: str, write: bool = False, conn: Connection | None = None
    ) -> None:
        """Devices touch only their own records; operators read any."""
        if isinstance(caller, DeviceCaller):
            if caller.device_id != device_id:
                raise b.ApiError(403, "a device may only use its own records", "device_id")
            return
        if write:
            raise b.ApiError(403, "only the device itself reports its status and history")
        if conn is None:
            with self.ctx.store.connect() as own:
                device_row(own, device_id)
        else:
            device_row(conn, device_id)

    # -- device credentials, remembered ----------------------------------------------

    def remembered(self, header: str | None) -> str | None:
        """The device whose credential this is, when it was seen lately."""
        digest = _digest(header)
        hit = None if digest is None else self._credentials.get(digest)
        if hit is None or hit[1] <= self.ctx.ts():
            return None
        return hit[0]

    def device_caller(self, header: str | None, conn: Connection) -> Caller:
        """Devices report every minute: their credential is looked up in memory
        first. An entry lives at most ``CREDENTIAL_TTL`` seconds (at least half
        of it), and enrolling or revoking a device forgets its credentials here
        and on the replicas, so a replaced credential stops working at once
        everywhere."""
        device_id = self.remembered(header)
        if device_id is not None:
            return DeviceCaller(device_id)
        epoch = self._epoch
        caller = self.authenticate(header, conn)
        digest = _digest(header)
        # Pending devices are looked up every time: their acceptance (on any
        # replica) must take effect on their next request.
        if (
            isinstance(caller, DeviceCaller)
            and not caller.pending
            and digest
            and epoch == self._epoch
        ):
            if len(self._credentials) > 200_000:
                self._credentials.clear()
                self._digests.clear()
            lifetime = self._ttl * random.uniform(0.5, 1.0)  # noqa: S311 - spread, not secrecy
            self._credentials[digest] = (caller.device_id, self.ctx.ts() + lifetime)
            self._digests.setdefault(caller.device_id, set()).add(digest)
        return caller

    def forget(self, device_id: str) -> None:
        """Drop a device's remembered credentials, here and on the replicas,
        after the change that invalidates them is committed."""
        self._forget(device_id)
        if self.ctx.relay is not None:
            try:
                self.ctx.relay.publish([Event(device_id, FORGET_CREDENTIAL, {})])
            except Exception:
                # The change is committed; the replicas' entries lapse by themselves.
                log.exception("could not tell the replicas to forget %s's credential", device_id)

    def _forget(self, device_id: str | None = None) -> None:
        """Drop remembered credentials here (of one device, or all)."""
        self._epoch += 1
        if device_id is None:
            self._credentials.clear()
            self._digests.clear()
            return
        for digest in self._digests.pop(device_id, ()):
            self._credentials.pop(digest, None)
