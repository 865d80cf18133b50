"""Blast-radius response: what the engine does at each level, and the
operator's HALT ALL, ROLLBACK FLEET and RESUME NORMAL.

- **warning**: running rollouts hold at their step (no promotion) while
  the incident is open; alert.
- **critical**: the running rollouts of the suspected commit halt; alert.
- **emergency**: every running rollout halts; each affected role (every
  role when the whole fleet is failing) is pinned to its last known good
  commit (the role's stable one): each of its devices gets a version lock
  by ``blast-radius`` with the reason "blast radius: ...", which sends the
  devices that took the bad commit back and passes their update throttle;
  devices in safe mode because of the commit are resumed so they take the
  pinned commit; alert.

An incident below emergency resolves itself once a whole window passed
without the failures crossing a threshold. An emergency stays until an
operator runs resume-all, which lifts the locks the emergency set (never
an operator's), closes the incident and starts the window afresh.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fleetcore.model import Alert
from fleetcore.server import bodies as b
from fleetcore.server import incidents as inc
from fleetcore.server import schema as t
from fleetcore.server.auth import Operator
from fleetcore.server.blast import (
    LEVELS,
    SETTING,
    BlastConfig,
    Reading,
    load_config,
    measure,
    rank,
    reading_json,
)
from fleetcore.server.context import Change, Context, Moved
from fleetcore.server.desired import Rollout, load_snapshot
from fleetcore.server.rollouts import halt, hold

log = logging.getLogger("fleetcore.server.blast")

ENGINE = "blast-radius"
RESET = "blast_radius_reset"
"""Setting: when resume-all started the window afresh (failures before it
were dealt with)."""


def _running(conn: Connection) -> list[Rollout]:
    rows = conn.execute(sa.select(t.rollouts).where(t.rollouts.c.state == "running"))
    return [Rollout.from_row(r) for r in rows]


def _since(ctx: Context, conn: Connection, cfg: BlastConfig) -> float:
    # Strictly after the resume: what arrived with it was dealt with.
    after_reset = float(ctx.store.get_setting(conn, RESET, 0.0)) + 0.001
    return max(ctx.ts() - cfg.window_seconds, after_reset)


def look(ctx: Context) -> Reading:
    with ctx.store.connect() as conn:
        cfg = load_config(ctx, conn)
        return measure(ctx, conn, cfg, since=_since(ctx, conn, cfg))


# -- the engine -----------------------------------------------------------------------


def respond(ctx: Context) -> bool:
    """One look at the window and what follows from it. Returns whether
    rollouts must hold (an incident is open)."""
    reading = look(ctx)
    with ctx.store.connect() as conn:
        current = inc.open_incident(conn)
    if reading.level is None:
        quiet = current is not None and ctx.ts() - current.seen_at >= reading.config.window_seconds
        if current is not None and quiet and current.level != "emergency":
            _resolve(ctx, current, "failures below every threshold for a whole window")
            return False
        return current is not None
    level = reading.level
    if current is not None and rank(level) <= rank(current.level):
        with ctx.change(ENGINE, bump=False) as ch:
            _refresh(ch, current, reading)
        return True
    roles = _pinned_roles(ctx, reading) if level == "emergency" else ()
    where = t.devices.c.role.in_(roles) if roles else None
    with ctx.change(ENGINE, tell=Moved("policy-changed", where)) as ch:
        if not ctx.store.sqlite:
            # Replicas sharing one database: one of them opens the incident.
            ch.conn.execute(sa.text("SELECT pg_advisory_xact_lock(7462003, 0)"))
        current = inc.open_incident(ch.conn)
        if current is not None and rank(level) <= rank(current.level):
            _refresh(ch, current, reading)
            return True
        incident_id = _open_or_raise(ch, current, reading)
        why = f"blast radius: {reading.scope.words() if reading.scope else level}"
        why += f" (incident {incident_id})"
        if level == "warning":
            _hold_all(ch, incident_id, why)
        elif level == "critical":
            _halt(ch, incident_id, why, only=reading.commit)
        else:
            _halt(ch, incident_id, why)
            _pin(ctx, ch, incident_id, roles, why, reading.commit)
            _release(ch, incident_id, reading)
        alert = _alert(level, incident_id, reading.commit, reading.roles, why, ch.at)
        inc.act(ch, incident_id, "alert", f"{alert.name} sent", alert=alert.name)
        ch.alert(alert)
    return True


def _refresh(ch: Change, current: inc.Incident, reading: Reading) -> None:
    """Keep the open incident's picture current (failures join, none leave)."""
    failed = sorted(set(current.failed_devices) | set(reading.failed_ids))
    inc.update(
        ch,
        current.id,
        seen_at=ch.at,
        failure_rate=max(current.failure_rate, reading.scope.rate if reading.scope else 0.0),
        failed_devices=failed,
        roles=sorted(set(current.roles) | set(reading.roles)),
        pattern=reading.pattern or current.pattern,
    )


def _open_or_raise(ch: Change, current: inc.Incident | None, reading: Reading) -> int:
    scope = reading.scope
    values: dict[str, Any] = {
        "level": reading.level,
        "commit": reading.commit,
        "scope": scope.words() if scope else "",
        "failure_rate": scope.rate if scope else 0.0,
        "roles": list(reading.roles),
        "failed_devices": reading.failed_ids,
        "pattern": reading.pattern,
    }
    detail = f"{reading.level}: {values['scope']}"
    if current is None:
        incident_id = inc.create(ch, **values)
        inc.act(ch, incident_id, "open", detail, level=reading.level, commit=reading.commit)
    else:
        incident_id = current.id
        values["failed_devices"] = sorted(set(current.failed_devices) | set(reading.failed_ids))
        values["roles"] = sorted(set(current.roles) | set(reading.roles))
        inc.update(ch, incident_id, seen_at=ch.at, **values)
        inc.act(ch, incident_id, "escalate", detail, level=reading.level, was=current.level)
    log.warning("blast radius %s (incident %s): %s", reading.level, incident_id, detail)
    return incident_id


def _hold_all(ch: Change, incident_id: int, why: str) -> None:
    running = _running(ch.conn)
    for ro in running:
        hold(ch, ro, why)
    inc.act(
        ch,
        incident_id,
        "hold",
        f"{len(running)} running rollout(s) hold at their step",
        rollouts=[ro.id for ro in running],
    )


def _halt(ch: Change, incident_id: int, why: str, only: str | None = None) -> None:
    running = [ro for ro in _running(ch.conn) if only is None or ro.commit == only]
    for ro in running:
        halt(ch, ro, why)
    what = "every running rollout" if only is None else f"the rollouts of {only[:12]}"
    inc.act(
        ch,
        incident_id,
        "halt",
        f"{what}: {len(running)} halted",
        rollouts=[ro.id for ro in running],
    )


def _pinned_roles(ctx: Context, reading: Reading) -> tuple[str, ...]:
    """The roles an emergency pins: those failing on the commit, or every
    role when the whole fleet is what crossed the threshold."""
    if reading.scope is not None and reading.scope.kind == "fleet":
        with ctx.store.connect() as conn:
            return tuple(
                sorted(r.role for r in conn.execute(sa.select(t.devices.c.role).distinct()))
            )
    return reading.roles


def _pin(
    ctx: Context,
    ch: Change,
    incident_id: int,
    roles: tuple[str, ...],
    why: str,
    bad: str | None,
) -> None:
    """Lock each device of ``roles`` to its role's last known good commit."""
    snap = load_snapshot(ch.conn, ctx.store)
    policies = {p.device_id: p for p in ch.conn.execute(sa.select(t.device_policies))}
    now = ch.at
    for role in roles:
        good, source = snap.stable_for(role), "its last known good commit"
        if good is None or good == bad:
            good, source = _healthy_commit(ch.conn, role, bad), "the commit its healthy devices run"
        if good is None:
            inc.act(
                ch,
                incident_id,
                "pin-skipped",
                f"role {role} has no known good commit: its devices were not pinned",
                role=role,
            )
            continue
        ids = [
            r.device_id
            for r in ch.conn.execute(
                sa.select(t.devices.c.device_id).where(
                    t.devices.c.role == role, t.devices.c.revoked_at.is_(None)
                )
            )
        ]
        pinned = 0
        for device_id in ids:
            policy = policies.get(device_id)
            operator_lock = (
                policy is not None
                and policy.lock_commit
                and policy.locked_by != ENGINE
                and (policy.locked_until is None or policy.locked_until > now)
            )
            if operator_lock:
                continue  # an operator's lock wins; it is theirs to lift
            values = {
                "lock_commit": good,
                "lock_reason": why,
                "locked_by": ENGINE,
                "locked_until": None,
            }
            if policy is None:
                ch.conn.execute(
                    t.device_policies.insert().values(device_id=device_id, auto_update=True)
                )
            ch.conn.execute(
                t.device_policies.update()
                .where(t.device_policies.c.device_id == device_id)
                .values(**values)
            )
            pinned += 1
        inc.act(
            ch,
            incident_id,
            "pin",
            f"role {role}: {pinned} device(s) pinned to {good[:12]}, {source}",
            role=role,
            commit=good,
            devices=pinned,
        )


def _healthy_commit(conn: Connection, role: str, bad: str | None) -> str | None:
    """The commit most healthy devices of the role run (not the suspect):
    the good one, for a role whose rollouts never finished."""
    row = conn.execute(
        sa.select(t.devices.c.commit, sa.func.count().label("n"))
        .where(
            t.devices.c.role == role,
            t.devices.c.status == "healthy",
            t.devices.c.commit.is_not(None),
            t.devices.c.commit != (bad or ""),
        )
        .group_by(t.devices.c.commit)
        .order_by(sa.desc("n"), t.devices.c.commit)
        .limit(1)
    ).first()
    return None if row is None else str(row.commit)


def _release(ch: Change, incident_id: int, reading: Reading) -> None:
    """Resume the devices in safe mode because of the suspected commit, so
    they take the pinned commit instead of waiting for an operator."""
    ids = [
        f.device_id
        for f in reading.failures
        if f.status == "safe_mode" and (reading.commit is None or f.commit == reading.commit)
    ]
    known = {
        r.device_id
        for r in ch.conn.execute(
            sa.select(t.device_policies.c.device_id).where(t.device_policies.c.device_id.in_(ids))
        )
    }
    for device_id in ids:
        if device_id not in known:
            ch.conn.execute(
                t.device_policies.insert().values(device_id=device_id, auto_update=True)
            )
        ch.conn.execute(
            t.device_policies.update()
            .where(t.device_policies.c.device_id == device_id)
            .values(resumes=t.device_policies.c.resumes + 1)
        )
    inc.act(
        ch,
        incident_id,
        "rollback",
        f"{len(reading.failed_ids)} failed device(s) sent back; {len(ids)} released from safe mode",
        devices=reading.failed_ids,
        released=ids,
    )


def _alert(
    level: str, incident_id: int, commit: str | None, roles: tuple[str, ...], why: str, at: float
) -> Alert:
    return Alert(
        name=f"incident-{level}",
        severity=level,
        summary=why,
        labels={
            "severity": level,
            "commit": commit or "",
            "role": ",".join(roles),
            "incident": str(incident_id),
        },
        detail={"incident": incident_id, "level": level},
        at=at,
    )


def _resolved(incident: inc.Incident, summary: str, at: float) -> Alert:
    return Alert(
        name="incident-resolved",
        severity="info",
        summary=summary,
        labels={
            "severity": incident.level,
            "commit": incident.commit or "",
            "role": ",".join(incident.roles),
            "incident": str(incident.id),
        },
        detail={"incident": incident.id, "level": incident.level},
        at=at,
        resolved=True,
    )


def _resolve(ctx: Context, current: inc.Incident, why: str) -> None:
    with ctx.change(ENGINE, bump=False) as ch:
        inc.update(ch, current.id, state="resolved", resolved_at=ch.at)
        inc.act(ch, current.id, "resolve", why)
        ch.alert(_resolved(current, f"incident {current.id} resolved: {why}", ch.at))


# -- operators ----------------------------------------------------------------------


class BlastRadius:
    """Operators read incidents, set the thresholds, halt and resume the fleet."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def config(self) -> dict[str, Any]:
        with self.ctx.store.connect() as conn:
            return load_config(self.ctx, conn).json()

    def set_config(self, op: Operator, req: b.BlastRadiusRequest) -> dict[str, Any]:
        op.require("admin")
        with self.ctx.store.connect() as conn:
            old = load_config(self.ctx, conn)
        given = {k: v for k, v in attrs.asdict(req).items() if k != "reason" and v is not None}
        cfg = BlastConfig(**{**old.json(), **given})
        cfg.check()
        with self.ctx.change(op.name, bump=False) as ch:
            self.ctx.store.set_setting(ch.conn, SETTING, cfg.json())
            ch.audit("fleet.blast_radius", reason=req.reason, detail=cfg.json())
        return cfg.json()

    def status(self) -> dict[str, Any]:
        """The thresholds, what the window shows now and the open incident."""
        reading = look(self.ctx)
        with self.ctx.store.connect() as conn:
            current = inc.open_incident(conn)
        return {
            **reading.config.json(),
            "now": reading_json(reading),
            "incident": None if current is None else current.json(),
        }

    def incidents(self) -> list[dict[str, Any]]:
        with self.ctx.store.connect() as conn:
            return [i.json() for i in inc.list_incidents(conn)]

    def incident(self, incident_id: int) -> dict[str, Any]:
        with self.ctx.store.connect() as conn:
            return inc.get_incident(conn, incident_id).json()

    def halt_all(self, op: Operator, req: b.HaltRequest) -> dict[str, Any]:
        """HALT ALL (and with ``rollback``, ROLLBACK FLEET: every role pinned
        to its last known good commit): an emergency an operator declared."""
        op.require("admin")
        if not req.reason.strip():
            raise b.ApiError(400, "say why the fleet halts: reason is empty", "reason")
        reading = look(self.ctx)
        why = f"halted by {op.name}: {req.reason}"
        roles: tuple[str, ...] = ()
        if req.rollback:
            with self.ctx.store.connect() as conn:
                roles = tuple(
                    sorted(r.role for r in conn.execute(sa.select(t.devices.c.role).distinct()))
                )
        where = t.devices.c.role.in_(roles) if roles else None
        with self.ctx.change(op.name, tell=Moved("policy-changed", where)) as ch:
            current = inc.open_incident(ch.conn)
            commit = reading.commit or next((ro.commit for ro in _running(ch.conn)), None)
            values: dict[str, Any] = {
                "level": "emergency",
                "scope": why,
                "commit": commit if current is None else current.commit or commit,
            }
            if current is None:
                incident_id = inc.create(
                    ch,
                    **values,
                    roles=list(reading.roles),
                    failed_devices=reading.failed_ids,
                    failure_rate=reading.scope.rate if reading.scope else 0.0,
                    pattern=reading.pattern,
                )
                inc.act(ch, incident_id, "open", why, level="emergency")
            else:
                incident_id = current.id
                inc.update(ch, incident_id, level="emergency", seen_at=ch.at)
                inc.act(ch, incident_id, "escalate", why, level="emergency", was=current.level)
            _halt(ch, incident_id, why)
            if req.rollback:
                _pin(self.ctx, ch, incident_id, roles, f"blast radius: {why}", commit)
            ch.alert(_alert("emergency", incident_id, commit, reading.roles, why, ch.at))
        return self.incident(incident_id)

    def resume_all(self, op: Operator, req: b.ActionRequest) -> dict[str, Any]:
        """RESUME NORMAL: lift the emergency's locks, close the incident and
        start the window afresh. Halted rollouts stay halted: resuming one
        would hand its commit out again, which is the operator's call."""
        op.require("admin")
        with self.ctx.change(op.name, tell=Moved("policy-changed")) as ch:
            lifted = ch.conn.execute(
                t.device_policies.update()
                .where(t.device_policies.c.locked_by == ENGINE)
                .values(lock_commit=None, lock_reason=None, locked_by=None, locked_until=None)
            ).rowcount
            self.ctx.store.set_setting(ch.conn, RESET, ch.at)
            current = inc.open_incident(ch.conn)
            closed = []
            while current is not None:
                inc.update(ch, current.id, state="resolved", resolved_at=ch.at)
                inc.act(
                    ch,
                    current.id,
                    "resume",
                    f"resumed by {op.name}: {req.reason}; {lifted} pin(s) lifted".replace(
                        ": ;", ";"
                    ),
                    lifted=lifted,
                )
                summary = f"incident {current.id} resolved by {op.name}: {req.reason}"
                ch.alert(_resolved(current, summary.rstrip(": "), ch.at))
                closed.append(current)
                current = inc.open_incident(ch.conn)
            ch.audit(
                "fleet.resume_all",
                reason=req.reason,
                detail={"lifted": lifted, "incidents": [c.id for c in closed]},
            )
        return {"lifted": lifted, "resolved": [c.id for c in closed]}


__all__ = ["ENGINE", "LEVELS", "BlastRadius", "look", "respond"]
