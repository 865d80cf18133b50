"""Incidents: what blast-radius protection saw and did, one row each.

Every detection opens an incident or updates the open one (there is at
most one open at a time: a fleet has one emergency, not five). Its
``actions`` list each step taken, when and by whom: the engine's hold,
halt, pin and release, an operator's halt-all or resume-all. Reads and the
row's shape live here; the decisions are in ``response.py``.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from attrs import frozen
from sqlalchemy.engine import Connection

from fleetcore.server import schema as t
from fleetcore.server.bodies import ApiError
from fleetcore.server.context import Change
from fleetcore.server.desired import iso


@frozen
class Incident:
    id: int
    level: str
    state: str
    opened_at: float
    opened_by: str
    seen_at: float
    resolved_at: float | None
    commit: str | None
    scope: str
    failure_rate: float
    roles: tuple[str, ...]
    failed_devices: tuple[str, ...]
    pattern: dict[str, Any]
    actions: tuple[dict[str, Any], ...]

    @classmethod
    def from_row(cls, row: Any) -> Incident:
        return cls(
            id=row.id,
            level=row.level,
            state=row.state,
            opened_at=row.opened_at,
            opened_by=row.opened_by,
            seen_at=row.seen_at,
            resolved_at=row.resolved_at,
            commit=row.commit,
            scope=row.scope,
            failure_rate=row.failure_rate,
            roles=tuple(json.loads(row.roles)),
            failed_devices=tuple(json.loads(row.failed_devices)),
            pattern=json.loads(row.pattern),
            actions=tuple(json.loads(row.actions)),
        )

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "level": self.level,
            "state": self.state,
            "opened_at": iso(self.opened_at),
            "opened_by": self.opened_by,
            "last_seen_at": iso(self.seen_at),
            "resolved_at": iso(self.resolved_at),
            "commit": self.commit,
            "scope": self.scope,
            "roles": list(self.roles),
            "failure_rate": round(self.failure_rate, 4),
            "failed_devices": list(self.failed_devices),
            "pattern": self.pattern,
            "actions": list(self.actions),
        }


def open_incident(conn: Connection) -> Incident | None:
    row = conn.execute(
        sa.select(t.incidents)
        .where(t.incidents.c.state == "open")
        .order_by(t.incidents.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else Incident.from_row(row)


def get_incident(conn: Connection, incident_id: int) -> Incident:
    row = conn.execute(sa.select(t.incidents).where(t.incidents.c.id == incident_id)).first()
    if row is None:
        raise ApiError(404, f"unknown incident {incident_id}", "id")
    return Incident.from_row(row)


def list_incidents(conn: Connection, limit: int = 50) -> list[Incident]:
    rows = conn.execute(sa.select(t.incidents).order_by(t.incidents.c.id.desc()).limit(limit))
    return [Incident.from_row(r) for r in rows]


def create(ch: Change, **values: Any) -> int:
    """A new open incident; ``roles``, ``failed_devices`` and ``pattern`` as values."""
    for key in ("roles", "failed_devices", "pattern"):
        if key in values:
            values[key] = json.dumps(values[key], sort_keys=True)
    inserted = ch.conn.execute(
        t.incidents.insert().values(
            state="open", opened_at=ch.at, seen_at=ch.at, opened_by=ch.actor, actions="[]", **values
        )
    ).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def update(ch: Change, incident_id: int, **values: Any) -> None:
    for key in ("roles", "failed_devices", "pattern"):
        if key in values:
            values[key] = json.dumps(values[key], sort_keys=True)
    ch.conn.execute(t.incidents.update().where(t.incidents.c.id == incident_id).values(**values))


def act(ch: Change, incident_id: int, action: str, detail: str, **extra: Any) -> None:
    """One step taken for the incident: in its ``actions`` and the audit log,
    with who (``ch.actor``) took it."""
    row = ch.conn.execute(
        sa.select(t.incidents.c.actions).where(t.incidents.c.id == incident_id)
    ).first()
    actions = json.loads(row.actions) if row is not None else []
    entry = {"action": action, "at": iso(ch.at), "by": ch.actor, "detail": detail, **extra}
    actions.append(entry)
    ch.conn.execute(
        t.incidents.update()
        .where(t.incidents.c.id == incident_id)
        .values(actions=json.dumps(actions))
    )
    ch.audit(f"incident.{action}", target=str(incident_id), reason=detail, detail=extra)
