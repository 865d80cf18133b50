"""What the server does, independent of HTTP: every decision and change.

Routes and the dashboard call these methods (in worker threads: SQLAlchemy
and git are blocking); each change runs in one transaction with its audit
line, then the devices it moved are told over SSE.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from attrs import frozen
from sqlalchemy.engine import Connection

from fleetcore.errors import ConfigError, FetchError
from fleetcore.plugin.manager import PluginManager
from fleetcore.server import bodies as b
from fleetcore.server import store as t
from fleetcore.server.channels import ChannelPump
from fleetcore.server.desired import (
    Rollout,
    Snapshot,
    Strategies,
    compute,
    desired_json,
    device_info,
    device_policy,
    iso,
    load_snapshot,
)
from fleetcore.server.events import CLOSE_STREAM, EVERY_DEVICE, Event, EventHub
from fleetcore.server.mirror import Mirror
from fleetcore.server.relay import PgRelay
from fleetcore.server.store import Store, hash_secret, write_audit

log = logging.getLogger("fleetcore.server")

ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}
DEFAULT_STEPS: dict[str, list[dict[str, Any]]] = {
    "canary": [
        {"segments": ["canary"]},
        {"segments": ["canary", "early"]},
        {"segments": ["canary", "early", "general"]},
    ],
    "percentage": [{"percent": p} for p in (1, 5, 25, 100)],
}
DEVICE_FIELDS = (
    "hostname",
    "commit",
    "agent_version",
    "uptime_seconds",
    "last_update",
    "last_update_result",
    "current_error",
    "ip_address",
    "cpu_percent",
    "memory_percent",
    "disk_percent",
    "network_kbps",
    "mode",
    "pending_commit",
)


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


Caller = Operator | DeviceCaller


GENERATION_TTL = 0.5
"""Seconds a 304 may be answered from memory after the generation was read.
Changes made through this server invalidate it at once; a change made through
another replica sharing the database may go unseen by a poll for that long
(devices woken by its event ask without their ETag, so the event is never
masked)."""

CREDENTIAL_TTL = 30.0
"""Seconds a device credential stays in the status path's memory: a
credential revoked or replaced through another replica sharing the database
may still be accepted here for that long."""


class Control:
    def __init__(
        self,
        store: Store,
        mirror: Mirror,
        pm: PluginManager,
        *,
        now: Callable[[], dt.datetime] | None = None,
        offline_after: float = 180.0,
        hub: EventHub | None = None,
        channels: Sequence[ChannelPump] = (),
    ) -> None:
        self.store = store
        self.mirror = mirror
        self.strategies = Strategies(pm)
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.offline_after = offline_after
        self._credentials: dict[str, tuple[str, float]] = {}
        self._credentials_epoch = 0
        """Grows whenever credentials are revoked or replaced here: a lookup
        that began before then must not put what it read into memory."""
        self._snapshot: Snapshot | None = None
        """The fleet-wide part of desired states, for its generation."""
        self._generation: tuple[int, float, int] | None = None
        """(generation, when read, the store's change count before reading)."""
        self.hub = hub or EventHub()
        self.channels = tuple(channels)
        self.relay: PgRelay | None = None
        if not store.sqlite:
            self.relay = PgRelay(store.engine, self.hub)

    def ts(self) -> float:
        return self.now().timestamp()

    # -- authentication ------------------------------------------------------------

    def authenticate(self, header: str | None, conn: Connection | None = None) -> Caller:
        scheme, _, secret = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise b.ApiError(401, "missing credential: send 'Authorization: Bearer <token>'")
        return self.caller_for(secret.strip(), conn)

    def caller_for(self, secret: str, conn: Connection | None = None) -> Caller:
        if conn is None:
            with self.store.connect() as own:
                return self.caller_for(secret, own)
        digest = hash_secret(secret)
        row = conn.execute(
            sa.select(t.devices.c.device_id).where(t.devices.c.credential_hash == digest)
        ).first()
        if row is not None:
            return DeviceCaller(row.device_id)
        tok = conn.execute(
            sa.select(t.tokens).where(
                t.tokens.c.token_hash == digest, t.tokens.c.kind == "operator"
            )
        ).first()
        if tok is None or tok.revoked or (tok.expires_at and tok.expires_at < self.ts()):
            raise b.ApiError(401, "unknown, expired or revoked credential")
        return Operator(tok.name, tok.role)

    @staticmethod
    def operator(caller: Caller, role: str = "viewer") -> Operator:
        if not isinstance(caller, Operator):
            raise b.ApiError(403, "devices cannot use the operator API")
        caller.require(role)
        return caller

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
            with self.store.connect() as own:
                self._device_row(own, device_id)
        else:
            self._device_row(conn, device_id)

    # -- the hot paths: one worker-thread hop and one connection each --------------

    def not_modified(
        self, header: str | None, device_id: str, if_none_match: str | None
    ) -> str | None:
        """The ETag, when a device's poll can be answered 304 from memory: its
        credential was seen lately and the fleet's generation was read less
        than ``GENERATION_TTL`` ago. No worker thread, no database."""
        if not if_none_match or self._generation is None:
            return None
        generation, read_at, changes = self._generation
        if changes != self.store.changes or time.monotonic() - read_at > GENERATION_TTL:
            return None  # changed here since, or possibly changed by a replica
        scheme, _, secret = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        hit = self._credentials.get(hash_secret(secret.strip()))
        if hit is None or hit[0] != device_id or hit[1] <= self.ts():
            return None
        etag = f'"g{generation}"'
        return etag if if_none_match == etag else None

    def poll_desired(
        self, header: str | None, device_id: str, if_none_match: str | None
    ) -> tuple[str, dict[str, Any] | None]:
        """(ETag, desired state), or (ETag, None) when the device's ETag still holds."""
        with self.store.connect() as conn:
            caller = self._device_caller(header, conn)
            self.device_access(caller, device_id, conn=conn)
            if isinstance(caller, DeviceCaller) and if_none_match:
                # The change count first: a commit racing this read then
                # invalidates what is cached.
                changes = self.store.changes
                generation = self.store.generation(conn)
                self._generation = (generation, time.monotonic(), changes)
                current = f'"g{generation}"'
                if if_none_match == current:
                    return current, None
        return self.desired(device_id)

    def report_status_batch(
        self, batch: list[tuple[str | None, str, Any]]
    ) -> list[b.ApiError | None]:
        """Many status reports in one transaction (group commit): each is
        checked on its own, a refused one does not touch the others."""
        outcomes: list[b.ApiError | None] = []
        now = self.ts()
        # One UPDATE per set of reported keys, for many devices. A device
        # that reported twice in one batch keeps its later report.
        groups: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
        with self.store.begin() as conn:
            for header, device_id, raw in batch:
                try:
                    caller = self._device_caller(header, conn)
                    self.device_access(caller, device_id, write=True, conn=conn)
                    req = b.parse(raw, b.StatusReport)
                except b.ApiError as exc:
                    outcomes.append(exc)
                    continue
                # The checked values (numbers as floats), of the keys reported.
                values = {k: getattr(req, k) for k in DEVICE_FIELDS if k in raw}
                values["status"] = req.status
                values["last_seen"] = now
                groups.setdefault(tuple(sorted(values)), {})[device_id] = values
                outcomes.append(None)
            for keys, rows in groups.items():
                t.update_devices(conn, keys, rows)
        return outcomes

    def _device_caller(self, header: str | None, conn: Connection) -> Caller:
        """Devices report every minute: their credential is looked up in memory
        first. An entry lives at most ``CREDENTIAL_TTL`` seconds, and every
        enrollment here clears them all, so a replaced credential stops
        working at once on this server and within the TTL on its replicas."""
        scheme, _, secret = (header or "").partition(" ")
        digest = hash_secret(secret.strip()) if scheme.lower() == "bearer" else ""
        hit = self._credentials.get(digest)
        if hit is not None and hit[1] > self.ts():
            return DeviceCaller(hit[0])
        epoch = self._credentials_epoch
        caller = self.authenticate(header, conn)
        if isinstance(caller, DeviceCaller) and epoch == self._credentials_epoch:
            if len(self._credentials) > 100_000:
                self._credentials.clear()
            self._credentials[digest] = (caller.device_id, self.ts() + CREDENTIAL_TTL)
        return caller

    def _forget_credentials(self, device_id: str | None = None) -> None:
        """Drop remembered credentials (of one device, or all), after the
        change that invalidates them is committed."""
        self._credentials_epoch += 1
        if device_id is None:
            self._credentials.clear()
            return
        for digest, (owner, _) in list(self._credentials.items()):
            if owner == device_id:
                self._credentials.pop(digest, None)

    @staticmethod
    def _device_row(conn: Connection, device_id: str) -> Any:
        row = conn.execute(sa.select(t.devices).where(t.devices.c.device_id == device_id)).first()
        if row is None:
            raise b.ApiError(404, f"unknown device {device_id!r}", "device_id")
        return row

    # -- enrollment ------------------------------------------------------------------

    def enroll(self, req: b.EnrollRequest) -> dict[str, Any]:
        now = self.ts()
        credential = t.new_secret("fcd")
        with self.store.begin() as conn:
            tok = conn.execute(
                sa.select(t.tokens).where(
                    t.tokens.c.token_hash == hash_secret(req.enrollment_token),
                    t.tokens.c.kind == "enrollment",
                )
            ).first()
            if tok is None or tok.revoked or (tok.expires_at and tok.expires_at < now):
                raise b.ApiError(401, "unknown or expired enrollment token", "enrollment_token")
            values = {
                "role": req.role,
                "segment": req.segment,
                "hostname": req.hostname or None,
                "credential_hash": hash_secret(credential),
                "revoked_at": None,
            }
            existing = conn.execute(
                sa.select(t.devices.c.device_id).where(t.devices.c.device_id == req.device_id)
            ).first()
            if existing is None:
                conn.execute(
                    t.devices.insert().values(
                        device_id=req.device_id, enrolled_at=now, status="unknown", **values
                    )
                )
                action = "device.enroll"
            else:
                # The old credential stops working in this same transaction.
                conn.execute(
                    t.devices.update()
                    .where(t.devices.c.device_id == req.device_id)
                    .values(**values)
                )
                action = "device.reenroll"
            write_audit(
                conn,
                actor=f"enrollment:{tok.name}",
                action=action,
                target=req.device_id,
                detail={"role": req.role, "segment": req.segment},
                at=now,
            )
            self.store.bump_generation(conn)
        self._forget_credentials()  # a re-enrollment revokes the old credential
        return {"device_id": req.device_id, "credential": credential}

    # -- desired state -----------------------------------------------------------------

    def etag(self) -> str:
        with self.store.connect() as conn:
            return f'"g{self.store.generation(conn)}"'

    def desired(self, device_id: str) -> tuple[str, dict[str, Any]]:
        with self.store.connect() as conn:
            # Every change that can move a desired state bumps the
            # generation, so the fleet-wide part is read once per
            # generation, not once per device: after a fleet-wide event,
            # thousands of woken devices ask at once.
            generation = self.store.generation(conn)
            snap = self._snapshot
            if snap is None or snap.generation != generation:
                snap = self._snapshot = load_snapshot(conn, self.store, generation)
            row = self._device_row(conn, device_id)
            policy_row = conn.execute(
                sa.select(t.device_policies).where(t.device_policies.c.device_id == device_id)
            ).first()
        state, rollout = self._compute(snap, row, policy_row)
        data = desired_json(state, rollout)
        data["resume"] = int(policy_row.resumes or 0) if policy_row is not None else 0
        return f'"g{snap.generation}"', data

    def _compute(self, snap: Snapshot, row: Any, policy_row: Any, **kw: Any) -> Any:
        return compute(
            device=device_info(row),
            policy=device_policy(policy_row),
            snap=snap,
            strategies=self.strategies,
            now=self.now(),
            branch_head=lambda branch: self.mirror.branches().get(branch),
            **kw,
        )

    def desired_all(self, conn: Connection, where: Any = None) -> dict[str, tuple[str | None, str]]:
        """(commit, why) of every device (matching ``where``), in one pass."""
        snap = load_snapshot(conn, self.store)
        query = sa.select(t.devices)
        if where is not None:
            query = query.where(where)
        rows = list(conn.execute(query))
        policies = {p.device_id: p for p in conn.execute(sa.select(t.device_policies))}
        out = {}
        for row in rows:
            state, _ = self._compute(snap, row, policies.get(row.device_id))
            out[row.device_id] = (state.commit, state.why)
        return out

    @contextmanager
    def notifying(
        self, kind: str, where: Any = None, touched: tuple[str, ...] = ()
    ) -> Iterator[None]:
        """Tell devices whose desired state a change moved (and those it touched)."""
        with self.store.connect() as conn:
            before = self.desired_all(conn, where)
        yield
        with self.store.connect() as conn:
            after = self.desired_all(conn, where)
        events = []
        for device_id, (commit, why) in after.items():
            changed = before.get(device_id) != (commit, why)
            if kind == "update-available" and changed and commit:
                events.append(Event(device_id, kind, {"commit": commit}))
            elif kind == "policy-changed" and (changed or device_id in touched):
                events.append(Event(device_id, kind, {"commit": commit, "why": why}))
        self._publish(events)

    def _publish(self, events: list[Event]) -> None:
        """To this server's streams, through the relay to its replicas', and
        to the event channels it was started with (only the replica that made
        the change sends them there: relayed events reach the hub alone)."""
        self.hub.publish(events)
        if events:
            for channel in self.channels:
                channel.submit(events)
        if self.relay is not None and events:
            try:
                self.relay.publish(events)
            except Exception:
                log.exception("could not relay events to the other servers")

    @contextmanager
    def broadcasting(self, kind: str, payload: dict[str, Any]) -> Iterator[None]:
        """Tell every device: for fleet-wide policy (a pin touches them all),
        where working out who changed would cost two passes over the fleet."""
        yield
        # One event object for every stream here and one relayed message:
        # thousands of per-device copies would also wake the garbage
        # collector, whose full pass over thousands of idle streams stalls
        # the very fan-out it interrupts.
        everyone = Event(EVERY_DEVICE, kind, payload)
        self.hub.publish([everyone])
        if self.relay is not None:
            try:
                self.relay.publish([everyone])
            except Exception:
                log.exception("could not relay events to the other servers")
        if self.channels:
            # A channel addresses devices one by one (an MQTT topic each).
            with self.store.connect() as conn:
                ids = [r.device_id for r in conn.execute(sa.select(t.devices.c.device_id))]
            events = [Event(device_id, kind, payload) for device_id in ids]
            for channel in self.channels:
                channel.submit(events)

    # -- status and history --------------------------------------------------------------

    def add_history(self, device_id: str, req: b.HistoryBody) -> int:
        now = self.ts()
        added = 0
        for index, entry in enumerate(req.entries):
            if entry.device_id not in (None, device_id):
                raise b.ApiError(
                    403, "a history entry names another device", f"entries.{index}.device_id"
                )
        with self.store.begin() as conn:
            for entry in req.entries:
                if entry.event != "update":
                    # Drift, mode and outage events reach the server through the
                    # status report; the history (and the health gate that reads
                    # it) holds updates only.
                    continue
                stamp = entry.timestamp.timestamp()
                exists = conn.execute(
                    sa.select(t.history.c.id).where(
                        t.history.c.device_id == device_id,
                        t.history.c.timestamp == stamp,
                        t.history.c.to_commit == entry.to_commit
                        if entry.to_commit is not None
                        else t.history.c.to_commit.is_(None),
                        t.history.c.result == entry.result,
                    )
                ).first()
                if exists:
                    continue  # resent by an agent unsure the first send arrived
                conn.execute(
                    t.history.insert().values(
                        device_id=device_id,
                        timestamp=stamp,
                        from_commit=entry.from_commit,
                        to_commit=entry.to_commit,
                        result=entry.result,
                        reason=entry.reason,
                        duration_seconds=entry.duration_seconds,
                        received_at=now,
                    )
                )
                added += 1
        return added

    # -- reads for operators ------------------------------------------------------------

    @staticmethod
    def device_json(row: Any) -> dict[str, Any]:
        data = {
            k: getattr(row, k) for k in ("device_id", "role", "segment", "status", *DEVICE_FIELDS)
        }
        data["last_seen"] = iso(row.last_seen)
        data["enrolled_at"] = iso(row.enrolled_at)
        data["revoked_at"] = iso(row.revoked_at)
        return data

    def devices(self) -> list[dict[str, Any]]:
        with self.store.connect() as conn:
            rows = conn.execute(sa.select(t.devices).order_by(t.devices.c.device_id))
            return [self.device_json(r) for r in rows]

    def device(self, device_id: str) -> dict[str, Any]:
        with self.store.connect() as conn:
            row = self._device_row(conn, device_id)
            policy_row = conn.execute(
                sa.select(t.device_policies).where(t.device_policies.c.device_id == device_id)
            ).first()
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
        _, desired = self.desired(device_id)
        policy = device_policy(policy_row)
        lock = policy.version_lock
        return {
            **self.device_json(row),
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
        from fleetcore.server.rollouts import progress

        with self.store.connect() as conn:
            rows = list(conn.execute(sa.select(t.devices)))
            snap = load_snapshot(conn, self.store)
            recent = conn.execute(
                sa.select(t.history.c.result, sa.func.count())
                .where(t.history.c.timestamp >= self.ts() - 3600)
                .group_by(t.history.c.result)
            ).all()
            active = [progress(self, conn, r) for r in snap.rollouts]
            pinned_by = self._pinned_by(conn, snap.pin.commit) if snap.pin else None
        total = len(rows)
        by_status: dict[str, int] = {}
        by_commit: dict[str, int] = {}
        by_role: dict[str, int] = {}
        for r in rows:
            by_status[r.status] = by_status.get(r.status, 0) + 1
            by_commit[r.commit or "none"] = by_commit.get(r.commit or "none", 0) + 1
            by_role[r.role] = by_role.get(r.role, 0) + 1
        pin = snap.pin if snap.pin is not None and snap.pin.active(self.now()) else None
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
        }

    @staticmethod
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

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.store.connect() as conn:
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

    # -- fleet policy ---------------------------------------------------------------------

    def _commit(self, ref: str, field: str = "commit") -> str:
        try:
            commit = self.mirror.resolve_or_fetch(ref)
        except FetchError as exc:
            raise b.ApiError(502, f"cannot fetch the fleet repo: {exc}", field) from None
        if commit is None:
            raise b.ApiError(400, f"unknown commit {ref!r}: not in the fleet repo", field)
        return commit

    def pin(self, op: Operator, req: b.PinRequest) -> dict[str, Any]:
        op.require("admin")
        commit = self._commit(req.commit)
        value = {"commit": commit, "reason": req.reason}
        if req.expires is not None:
            value["expires"] = req.expires.isoformat()
        payload = {"commit": commit, "why": "pin"}
        with self.broadcasting("policy-changed", payload), self.store.begin() as conn:
            self.store.set_setting(conn, "pin", value)
            write_audit(
                conn,
                actor=op.name,
                action="fleet.pin",
                target=commit,
                reason=req.reason,
                detail=value,
                at=self.ts(),
            )
            self.store.bump_generation(conn)
        return value

    def unpin(self, op: Operator, req: b.ActionRequest) -> None:
        op.require("admin")
        with self.broadcasting("policy-changed", {"why": "unpin"}), self.store.begin() as conn:
            old = self.store.get_setting(conn, "pin")
            if old is None:
                raise b.ApiError(409, "the fleet is not pinned")
            conn.execute(t.settings.delete().where(t.settings.c.key == "pin"))
            write_audit(
                conn,
                actor=op.name,
                action="fleet.unpin",
                target=old["commit"],
                reason=req.reason,
                at=self.ts(),
            )
            self.store.bump_generation(conn)

    def set_window(self, op: Operator, req: b.WindowRequest) -> dict[str, Any] | None:
        """The fleet's maintenance window (a device's own one wins)."""
        from fleetcore.server.desired import window_json

        op.require("admin")
        value = window_json(req.maintenance_window)
        payload = {"why": "maintenance-window"}
        with self.broadcasting("policy-changed", payload), self.store.begin() as conn:
            if value is None:
                conn.execute(t.settings.delete().where(t.settings.c.key == "maintenance_window"))
            else:
                self.store.set_setting(conn, "maintenance_window", value)
            write_audit(
                conn,
                actor=op.name,
                action="fleet.maintenance_window",
                reason=req.reason,
                detail={"maintenance_window": value},
                at=self.ts(),
            )
            self.store.bump_generation(conn)
        return value

    def _policy_row(self, conn: Connection, device_id: str) -> Any:
        self._device_row(conn, device_id)
        row = conn.execute(
            sa.select(t.device_policies).where(t.device_policies.c.device_id == device_id)
        ).first()
        if row is None:
            conn.execute(t.device_policies.insert().values(device_id=device_id, auto_update=True))
        return row

    def _set_policy(self, conn: Connection, device_id: str, **values: Any) -> None:
        self._policy_row(conn, device_id)
        conn.execute(
            t.device_policies.update()
            .where(t.device_policies.c.device_id == device_id)
            .values(**values)
        )

    def lock(self, op: Operator, device_id: str, req: b.LockRequest) -> None:
        op.require("admin")
        with self.store.connect() as conn:
            self._device_row(conn, device_id)
        commit = self._commit(req.commit)
        touched = (device_id,)
        scope = t.devices.c.device_id == device_id
        with self.notifying("policy-changed", scope, touched), self.store.begin() as conn:
            until = req.until.timestamp() if req.until else None
            self._set_policy(
                conn,
                device_id,
                lock_commit=commit,
                lock_reason=req.reason,
                locked_by=op.name,
                locked_until=until,
            )
            write_audit(
                conn,
                actor=op.name,
                action="device.lock",
                target=device_id,
                reason=req.reason,
                detail={"commit": commit, "until": iso(until)},
                at=self.ts(),
            )
            self.store.bump_generation(conn)

    def resume(self, op: Operator, device_id: str, req: b.ActionRequest) -> int:
        """Let a device in safe mode attempt updates again (it sees the count grow)."""
        op.require("operator")
        with self.store.connect() as conn:
            self._device_row(conn, device_id)
        touched = (device_id,)
        scope = t.devices.c.device_id == device_id
        with self.notifying("policy-changed", scope, touched), self.store.begin() as conn:
            row = self._policy_row(conn, device_id)
            count = int(getattr(row, "resumes", 0) or 0) + 1
            self._set_policy(conn, device_id, resumes=count)
            write_audit(
                conn,
                actor=op.name,
                action="device.resume",
                target=device_id,
                reason=req.reason,
                at=self.ts(),
            )
            self.store.bump_generation(conn)
        return count

    def unlock(self, op: Operator, device_id: str, req: b.ActionRequest) -> None:
        op.require("admin")
        touched = (device_id,)
        scope = t.devices.c.device_id == device_id
        with self.notifying("policy-changed", scope, touched), self.store.begin() as conn:
            row = self._policy_row(conn, device_id)
            if row is None or not row.lock_commit:
                raise b.ApiError(409, f"device {device_id} is not locked", "device_id")
            self._set_policy(
                conn,
                device_id,
                lock_commit=None,
                lock_reason=None,
                locked_by=None,
                locked_until=None,
            )
            write_audit(
                conn,
                actor=op.name,
                action="device.unlock",
                target=device_id,
                reason=req.reason,
                at=self.ts(),
            )
            self.store.bump_generation(conn)

    def override(self, op: Operator, device_id: str, req: b.OverrideRequest) -> None:
        op.require("admin")
        values: dict[str, Any] = {}
        if req.clear:
            values = {"branch": None, "auto_update": True, "maintenance_window": None}
        if req.branch is not None:
            if req.branch and req.branch not in self.mirror.branches():
                try:
                    self.mirror.fetch()
                except FetchError as exc:
                    raise b.ApiError(502, f"cannot fetch the fleet repo: {exc}", "branch") from None
                if req.branch not in self.mirror.branches():
                    raise b.ApiError(400, f"unknown branch {req.branch!r}", "branch")
            values["branch"] = req.branch or None
        if req.auto_update is not None:
            values["auto_update"] = req.auto_update
        if req.maintenance_window is not None:
            from fleetcore.server.desired import window_json

            values["maintenance_window"] = json.dumps(window_json(req.maintenance_window))
        if not values:
            raise b.ApiError(400, "nothing to change: give branch, auto_update or clear")
        touched = (device_id,)
        scope = t.devices.c.device_id == device_id
        with self.notifying("policy-changed", scope, touched), self.store.begin() as conn:
            self._set_policy(conn, device_id, **values)
            write_audit(
                conn,
                actor=op.name,
                action="device.override",
                target=device_id,
                reason=req.reason,
                detail=values,
                at=self.ts(),
            )
            self.store.bump_generation(conn)

    def create_token(self, op: Operator, req: b.TokenRequest) -> dict[str, Any]:
        op.require("admin")
        now = self.ts()
        expires_at = req.expires.timestamp() if req.expires is not None else None
        if expires_at is not None and expires_at <= now:
            raise b.ApiError(400, f"expires is in the past: {req.expires}", "expires")
        token_id, token = self.store.issue_token(
            "operator", req.role, name=req.name, expires_at=expires_at, actor=op.name, now=now
        )
        return {
            "id": token_id,
            "token": token,
            "role": req.role,
            "name": req.name,
            "expires_at": iso(expires_at),
        }

    def tokens(self, op: Operator) -> list[dict[str, Any]]:
        op.require("admin")
        return self.store.list_tokens(self.ts())

    def revoke_token(self, op: Operator, token_id: int, req: b.ActionRequest) -> dict[str, Any]:
        """Operator tokens are checked in the database on every request, so
        the token is refused at once here and on every replica. An admin may
        revoke the token they are using: this request still completes."""
        op.require("admin")
        return self.store.revoke_token(token_id, actor=op.name, reason=req.reason, now=self.ts())

    def revoke_device(self, op: Operator, device_id: str, req: b.ActionRequest) -> None:
        """The device's credential stops working: at once on this server, within
        ``CREDENTIAL_TTL`` on replicas that remember it. Its record, history
        and policy stay; enrolling again (with an enrollment token) gives it a
        new credential."""
        op.require("admin")
        now = self.ts()
        with self.store.begin() as conn:
            self._device_row(conn, device_id)
            # The column may not be empty (and is unique): a hash of a secret
            # nobody was given matches no credential.
            updated = conn.execute(
                t.devices.update()
                .where(t.devices.c.device_id == device_id, t.devices.c.revoked_at.is_(None))
                .values(credential_hash=hash_secret(t.new_secret("revoked")), revoked_at=now)
            ).rowcount
            if updated == 0:
                raise b.ApiError(409, f"device {device_id} is already revoked", "device_id")
            write_audit(
                conn,
                actor=op.name,
                action="device.revoke",
                target=device_id,
                reason=req.reason,
                at=now,
            )
        self._forget_credentials(device_id)
        # Its open event streams end, here and on the replicas.
        self._publish([Event(device_id, CLOSE_STREAM, {})])

    # -- rollouts ---------------------------------------------------------------------------

    def start_rollout(self, op: Operator, req: b.RolloutRequest) -> dict[str, Any]:
        from fleetcore.server.rollouts import rollout_json

        op.require("operator")
        if req.strategy not in self.strategies.names():
            installed = ", ".join(self.strategies.names()) or "none"
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
                self.strategies.check(req.strategy, step["options"], f"steps.{index}.options")
            except ConfigError as exc:
                first = exc.problems[0]
                raise b.ApiError(
                    400, "; ".join(exc.problems), first.rpartition(" @ ")[2] or None
                ) from None
        commit = self._commit(req.commit)
        if req.role is not None and not self.mirror.has_role(commit, req.role):
            raise b.ApiError(400, f"commit {commit[:12]} has no folder roles/{req.role}", "role")
        roles = self.mirror.roles(commit)
        if not roles:
            raise b.ApiError(400, f"commit {commit[:12]} has no roles/ folder", "commit")
        now = self.ts()
        scope = None if req.role is None else t.devices.c.role == req.role
        with self.notifying("update-available", scope), self.store.begin() as conn:
            same_role = (
                t.rollouts.c.role.is_(None) if req.role is None else t.rollouts.c.role == req.role
            )
            superseded = conn.execute(
                t.rollouts.update()
                .where(same_role, t.rollouts.c.state.in_(("running", "halted")))
                .values(state="superseded", finished_at=now, reason="a newer rollout started")
            ).rowcount
            inserted = conn.execute(
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
                    created_at=now,
                    step_started_at=now,
                    roles=json.dumps(roles),
                )
            ).inserted_primary_key
            assert inserted is not None
            rollout_id = int(inserted[0])
            self._decide(conn, rollout_id, "start", 0, f"by {op.name}: {req.reason}".rstrip(": "))
            write_audit(
                conn,
                actor=op.name,
                action="rollout.start",
                target=str(rollout_id),
                reason=req.reason,
                at=now,
                detail={
                    "commit": commit,
                    "role": req.role,
                    "strategy": req.strategy,
                    "steps": steps,
                    "superseded": superseded,
                },
            )
            self.store.bump_generation(conn)
        with self.store.connect() as conn:
            return rollout_json(self, conn, self._rollout(conn, int(rollout_id)))

    def _decide(
        self, conn: Connection, rollout_id: int, action: str, step: int, detail: str
    ) -> None:
        conn.execute(
            t.decisions.insert().values(
                rollout_id=rollout_id, at=self.ts(), action=action, step=step, detail=detail
            )
        )

    @staticmethod
    def _rollout(conn: Connection, rollout_id: int) -> Rollout:
        row = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.id == rollout_id)).first()
        if row is None:
            raise b.ApiError(404, f"unknown rollout {rollout_id}", "id")
        return Rollout.from_row(row)

    def rollouts(self, limit: int = 50) -> list[dict[str, Any]]:
        from fleetcore.server.rollouts import rollout_json

        with self.store.connect() as conn:
            rows = conn.execute(sa.select(t.rollouts).order_by(t.rollouts.c.id.desc()).limit(limit))
            items = [Rollout.from_row(r) for r in rows]
            return [rollout_json(self, conn, r, detail=False) for r in items]

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        from fleetcore.server.rollouts import rollout_json

        with self.store.connect() as conn:
            return rollout_json(self, conn, self._rollout(conn, rollout_id))

    def rollout_action(
        self, op: Operator, rollout_id: int, action: str, reason: str
    ) -> dict[str, Any]:
        from fleetcore.server import rollouts as engine

        op.require("operator")
        with self.store.connect() as conn:
            current = self._rollout(conn, rollout_id)
        scope = None if current.role is None else t.devices.c.role == current.role
        with self.notifying("update-available", scope), self.store.begin() as conn:
            ro = self._rollout(conn, rollout_id)
            engine.apply_action(self, conn, ro, action, actor=op.name, reason=reason)
        return self.rollout(rollout_id)
