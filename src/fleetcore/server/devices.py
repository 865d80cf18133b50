"""What devices do: poll their desired state, report status and history;
and an operator revoking a device's credential (enrollment is in
:mod:`fleetcore.server.enrollment`).

The poll and the status report are the hot paths: one worker-thread hop and
one connection each (a poll that hits its ETag often neither).
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetcore.server import alerts as al
from fleetcore.server import bodies as b
from fleetcore.server import schema as t
from fleetcore.server.auth import Auth, DeviceCaller, Operator
from fleetcore.server.context import Context
from fleetcore.server.desired_states import etag_of
from fleetcore.server.events import CLOSE_STREAM, Event
from fleetcore.server.store import device_row, hash_secret, new_secret, update_devices

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
    "branch",
)


METRIC_FIELDS = (
    "network_receive_bytes_per_second",
    "network_transmit_bytes_per_second",
    "containers",
    "drift",
)
"""Kept together as JSON in the ``metrics`` column (read back by /metrics and
the dashboard)."""


STATUS, HISTORY = "status", "history"
"""The kinds of device writes :meth:`Devices.write_batch` takes."""

_history = t.history.c
_HISTORY_SEEN = sa.select(_history.id).where(
    _history.device_id == sa.bindparam("device_id"),
    _history.timestamp == sa.bindparam("timestamp"),
    _history.to_commit.is_not_distinct_from(sa.bindparam("to_commit")),
    _history.result == sa.bindparam("result"),
)
"""An entry the device sent before (the same update, at the same moment)."""
_HISTORY_ADD = t.history.insert()
"""Both built once: every device of a rollout step sends its entry at once."""


def metrics_text(req: b.StatusReport) -> str:
    return json.dumps(
        {
            "network_receive_bytes_per_second": req.network_receive_bytes_per_second,
            "network_transmit_bytes_per_second": req.network_transmit_bytes_per_second,
            "containers": [b.converter.unstructure(c) for c in req.containers or ()],
            "drift": None if req.drift is None else b.converter.unstructure(req.drift),
        },
        separators=(",", ":"),
    )


def labels_text(labels: dict[str, str]) -> str:
    """A device's labels as its ``labels`` column holds them: a JSON object."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def labels_of(text: str | None) -> dict[str, str]:
    return dict(json.loads(text)) if text else {}


class Devices:
    def __init__(self, ctx: Context, auth: Auth) -> None:
        self.ctx = ctx
        self.auth = auth

    # -- the desired-state poll ------------------------------------------------------

    def not_modified(
        self, header: str | None, device_id: str, if_none_match: str | None
    ) -> str | None:
        """The ETag, when a device's poll can be answered 304 from memory: its
        credential was seen lately and the fleet's generation was read less
        than ``GENERATION_TTL`` ago. No worker thread, no database."""
        if not if_none_match:
            return None
        generation = self.ctx.states.fresh_generation()
        if generation is None or self.auth.remembered(header) != device_id:
            return None
        etag = etag_of(generation)
        return etag if if_none_match == etag else None

    def poll_desired(
        self, header: str | None, device_id: str, if_none_match: str | None
    ) -> tuple[str, dict[str, Any] | None]:
        """(ETag, desired state), or (ETag, None) when the device's ETag still holds."""
        with self.ctx.store.connect() as conn:
            caller = self.auth.device_caller(header, conn)
            self.auth.device_access(caller, device_id, conn=conn)
            if isinstance(caller, DeviceCaller):
                caller.require_accepted()
            if isinstance(caller, DeviceCaller) and if_none_match:
                current = etag_of(self.ctx.states.read_generation(conn))
                if if_none_match == current:
                    return current, None
            return self.ctx.states.desired(device_id, conn)

    # -- status and history ----------------------------------------------------------

    def write_batch(self, batch: list[tuple[str, str | None, str, Any]]) -> list[b.ApiError | None]:
        """Devices' status reports and history entries, many in one
        transaction (group commit): each ``(STATUS or HISTORY, the
        Authorization header, device id, JSON body)`` is checked on its
        own, and a refused one does not touch the others. Both go through
        one writer: every device of a rollout step sends both at once, and
        on SQLite a second writer waiting for the lock sleeps in growing
        steps instead of being woken when it is free."""
        outcomes: list[b.ApiError | None] = []
        now = self.ctx.ts()
        # One UPDATE per set of reported keys, for many devices. A device
        # that reported twice in one batch keeps its later report.
        groups: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
        updates: list[tuple[str, list[b.HistoryEntry]]] = []
        with self.ctx.store.begin() as conn:
            for kind, header, device_id, raw in batch:
                try:
                    caller = self.auth.device_caller(header, conn)
                    self.auth.device_access(caller, device_id, write=True, conn=conn)
                    if kind == HISTORY:
                        updates.append((device_id, _update_entries(device_id, raw)))
                    else:
                        self._stage_status(groups, device_id, raw, now)
                except b.ApiError as exc:
                    outcomes.append(exc)
                    continue
                outcomes.append(None)
            before = _watched(conn, groups)
            if _branch_changed(conn, groups):
                # Another branch is another desired state: a new generation,
                # or the device's ETag would keep answering "not modified".
                self.ctx.store.bump_generation(conn)
            for keys, rows in groups.items():
                update_devices(conn, keys, rows)
            for device_id, entries in updates:
                _add_history(conn, device_id, entries, now)
        self._status_alerts(before, groups, now)
        return outcomes

    def _stage_status(
        self,
        groups: dict[tuple[str, ...], dict[str, dict[str, Any]]],
        device_id: str,
        raw: Any,
        now: float,
    ) -> None:
        req = b.parse(raw, b.StatusReport)
        # The checked values (numbers as floats), of the keys reported.
        values = {k: getattr(req, k) for k in DEVICE_FIELDS if k in raw}
        if req.labels is not None:  # left out: the labels stay as they are
            values["labels"] = labels_text(req.labels)
        if any(k in raw for k in METRIC_FIELDS):
            values["metrics"] = metrics_text(req)
        self.ctx.samples.add(
            device_id,
            now,
            (
                req.cpu_percent,
                req.memory_percent,
                req.disk_percent,
                req.network_receive_bytes_per_second,
                req.network_transmit_bytes_per_second,
            ),
        )
        values["status"] = req.status
        values["last_seen"] = now
        groups.setdefault(tuple(sorted(values)), {})[device_id] = values

    def _status_alerts(
        self,
        before: dict[str, Any],
        groups: dict[tuple[str, ...], dict[str, dict[str, Any]]],
        now: float,
    ) -> None:
        """Alerts for devices that entered or left safe mode, or came back
        from offline, with this batch."""
        for rows in groups.values():
            for device_id, values in rows.items():
                old = before.get(device_id)
                if old is None:
                    continue
                status = values["status"]
                commit = values.get("pending_commit") or values.get("commit") or old.pending_commit
                commit = commit or old.commit or ""
                if status == "safe_mode" and old.status != "safe_mode":
                    error = values.get("current_error") or old.current_error
                    self.ctx.alert(al.device_safe_mode(device_id, old.role, commit, error, now))
                elif old.status == "safe_mode" and status != "safe_mode":
                    self.ctx.alert(
                        al.device_safe_mode(device_id, old.role, commit, None, now, resolved=True)
                    )
                if old.status == "offline" and status != "offline":
                    silent = now - (old.last_seen or now)
                    self.ctx.alert(al.device_offline(old, silent, now, resolved=True))

    # -- credentials -------------------------------------------------------------------

    def revoke_device(self, op: Operator, device_id: str, req: b.ActionRequest) -> None:
        """The device's credential stops working: at once on this server, within
        ``CREDENTIAL_TTL`` on replicas that remember it. Its record, history
        and policy stay; enrolling again (with an enrollment token) gives it a
        new credential once an admin allows it (``allow-reenroll``)."""
        op.require("admin")
        with self.ctx.change(op.name, bump=False) as ch:
            device_row(ch.conn, device_id)
            # The column may not be empty (and is unique): a hash of a secret
            # nobody was given matches no credential.
            updated = ch.conn.execute(
                t.devices.update()
                .where(t.devices.c.device_id == device_id, t.devices.c.revoked_at.is_(None))
                .values(credential_hash=hash_secret(new_secret("revoked")), revoked_at=ch.at)
            ).rowcount
            if updated == 0:
                raise b.ApiError(409, f"device {device_id} is already revoked", "device_id")
            ch.audit("device.revoke", target=device_id, reason=req.reason)
        self.auth.forget(device_id)
        # Its open event streams end, here and on the replicas.
        self.ctx.publish([Event(device_id, CLOSE_STREAM, {})])


def _watched(
    conn: Connection, groups: dict[tuple[str, ...], dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    """The rows, before the batch, of reporting devices whose report may
    change what operators are alerted to: those offline or in safe mode, and
    those now reporting safe mode. One indexed read per batch."""
    reporting = [d for rows in groups.values() for d in rows]
    safe = [d for rows in groups.values() for d, v in rows.items() if v["status"] == "safe_mode"]
    if not reporting:
        return {}
    c = t.devices.c
    query = sa.select(
        c.device_id, c.role, c.status, c.commit, c.pending_commit, c.current_error, c.last_seen
    ).where(
        c.device_id.in_(reporting),
        sa.or_(c.status.in_(("offline", "safe_mode")), c.device_id.in_(safe or [""])),
    )
    return {row.device_id: row for row in conn.execute(query)}


def _branch_changed(
    conn: Connection, groups: dict[tuple[str, ...], dict[str, dict[str, Any]]]
) -> bool:
    """Whether a report of the batch changes the branch its device follows
    (the ``[server] branch`` of its agent.toml). One indexed read per batch."""
    branches = {
        d: v["branch"] for rows in groups.values() for d, v in rows.items() if "branch" in v
    }
    if not branches:
        return False
    c = t.devices.c
    stored = dict(
        conn.execute(sa.select(c.device_id, c.branch).where(c.device_id.in_(list(branches)))).all()
    )
    return any(stored.get(d) != branch for d, branch in branches.items())


def _update_entries(device_id: str, raw: Any) -> list[b.HistoryEntry]:
    """The update entries of a history body; a 400 or 403 names the bad one.
    Drift, mode and outage events reach the server through the status
    report: the history (and the health gate that reads it) holds updates."""
    req = b.parse(raw, b.HistoryBody)
    for index, entry in enumerate(req.entries):
        if entry.device_id not in (None, device_id):
            raise b.ApiError(
                403, "a history entry names another device", f"entries.{index}.device_id"
            )
    return [entry for entry in req.entries if entry.event == "update"]


def _add_history(
    conn: Connection, device_id: str, entries: list[b.HistoryEntry], now: float
) -> None:
    for entry in entries:
        row = {
            "device_id": device_id,
            "timestamp": entry.timestamp.timestamp(),
            "to_commit": entry.to_commit,
            "result": entry.result,
        }
        if conn.execute(_HISTORY_SEEN, row).first():
            continue  # resent by an agent unsure the first send arrived
        conn.execute(
            _HISTORY_ADD,
            {
                **row,
                "from_commit": entry.from_commit,
                "reason": entry.reason,
                "duration_seconds": entry.duration_seconds,
                "received_at": now,
            },
        )
