"""Blast-radius detection: how much of the fleet is failing right now.

Every engine tick :func:`measure` collects the failures of a sliding
window (``window_seconds``, 5 minutes by default):

- an update that failed or was rolled back (a history row), which is also
  how a device enters safe mode;
- a device that updated in the window and now reports ``failed`` or
  ``safe_mode`` (it turned unhealthy after the update).

It then judges three kinds of scope, each a share of failing devices:

- the **fleet**: failing devices of every device;
- each **role**: failing devices of the role's devices, so a role that fails
  entirely cannot hide inside a large healthy fleet;
- each **commit** an active rollout hands out: failing devices on the commit
  of the devices the rollout targets so far, so five canaries out of ten
  failing count as half, not as half a percent of the fleet.

A scope counts only with at least ``min_devices`` failing devices: two
devices of a tiny role, one failing, are no evidence of anything. The level
is the highest tier any scope crosses (rate strictly above the threshold).
What to do about it is in ``incidents.py``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import attrs
import sqlalchemy as sa
from attrs import asdict, field, frozen
from sqlalchemy.engine import Connection

from fleetcore.server import schema as t
from fleetcore.server.bodies import ApiError
from fleetcore.server.context import Context
from fleetcore.server.desired import Rollout
from fleetcore.server.devices import labels_of
from fleetcore.server.patterns import DeviceFacts, DeviceFailure, analyse
from fleetcore.server.progress import current_step

LEVELS = ("warning", "critical", "emergency")
SETTING = "blast_radius"
FAILING_STATUSES = ("failed", "safe_mode")


@frozen(kw_only=True)
class BlastConfig:
    """The tiers (shares of a scope's devices failing), the window and the
    smallest number of failing devices that counts as evidence."""

    warning: float = 0.05
    critical: float = 0.10
    emergency: float = 0.20
    window_seconds: float = 300.0
    min_devices: int = 5

    def check(self) -> None:
        for name in LEVELS:
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ApiError(400, f"{name} must be above 0 and at most 1, got {value}", name)
        if not self.warning <= self.critical <= self.emergency:
            raise ApiError(
                400,
                "thresholds must rise: warning <= critical <= emergency, got "
                f"{self.warning} / {self.critical} / {self.emergency}",
                "warning",
            )
        if not 1 <= self.window_seconds <= 86400:
            raise ApiError(400, "window must be between 1s and 24h", "window_seconds")
        if not 1 <= self.min_devices <= 1_000_000:
            raise ApiError(400, "min_devices must be at least 1", "min_devices")

    def level(self, rate: float) -> str | None:
        for name in reversed(LEVELS):
            if rate > getattr(self, name):
                return name
        return None

    def json(self) -> dict[str, Any]:
        return asdict(self)


def load_config(ctx: Context, conn: Connection) -> BlastConfig:
    stored = ctx.store.get_setting(conn, SETTING) or {}
    known = {k: v for k, v in stored.items() if k in attrs.fields_dict(BlastConfig)}
    return BlastConfig(**known)


def rank(level: str | None) -> int:
    return 0 if level is None else LEVELS.index(level) + 1


@frozen
class Failure:
    device_id: str
    role: str
    commit: str | None
    error: str
    at: float
    status: str


@frozen
class Scope:
    kind: str  # fleet | role | commit
    name: str
    failing: int
    population: int

    @property
    def rate(self) -> float:
        return self.failing / max(self.population, 1)

    def words(self) -> str:
        where = {"fleet": "of the fleet", "role": f"of role {self.name}"}.get(
            self.kind, f"given {self.name[:12]}"
        )
        return f"{self.failing} of {self.population} devices {where} failing ({self.rate:.0%})"


@frozen
class Reading:
    """One look at the window: the failures, the worst scope and its level."""

    config: BlastConfig
    failures: tuple[Failure, ...]
    level: str | None
    scope: Scope | None
    commit: str | None
    roles: tuple[str, ...]
    pattern: dict[str, Any] = field(factory=dict)

    @property
    def failed_ids(self) -> list[str]:
        return sorted({f.device_id for f in self.failures})


def collect(ctx: Context, conn: Connection, since: float) -> dict[str, Failure]:
    """The latest failure of each device in the window."""
    found: dict[str, Failure] = {}
    in_window = t.history.c.received_at >= since
    # Only devices with history in the window can count (a failure, or an
    # update they turned unhealthy after): the rest of the fleet is not read.
    devices = {
        r.device_id: r
        for r in conn.execute(
            sa.select(t.devices).where(
                t.devices.c.revoked_at.is_(None),
                t.devices.c.device_id.in_(sa.select(t.history.c.device_id).where(in_window)),
            )
        )
    }
    recent = conn.execute(sa.select(t.history).where(in_window).order_by(t.history.c.id)).all()
    updated: set[tuple[str, str | None]] = set()
    for h in recent:
        row = devices.get(h.device_id)
        if row is None:
            continue
        if h.result in ("failed", "rollback"):
            found[h.device_id] = Failure(
                h.device_id, row.role, h.to_commit, h.reason or h.result, h.received_at, row.status
            )
        elif h.result == "success":
            updated.add((h.device_id, h.to_commit))
    for row in devices.values():
        if (
            row.status in FAILING_STATUSES
            and (row.last_seen or 0) >= since
            and (row.device_id, row.commit) in updated
            and row.device_id not in found
        ):
            found[row.device_id] = Failure(
                row.device_id,
                row.role,
                row.commit,
                row.current_error or row.status,
                row.last_seen,
                row.status,
            )
    return found


def measure(
    ctx: Context, conn: Connection, config: BlastConfig | None = None, since: float | None = None
) -> Reading:
    """Where the fleet stands in the window (reads only); ``since`` cuts the
    window shorter (failures an operator already dealt with)."""
    cfg = config or load_config(ctx, conn)
    failures = collect(ctx, conn, ctx.ts() - cfg.window_seconds if since is None else since)
    if not failures:  # the usual tick: nothing more to read
        return Reading(config=cfg, failures=(), level=None, scope=None, commit=None, roles=())
    roles: Counter[str] = Counter(
        dict(
            conn.execute(
                sa.select(t.devices.c.role, sa.func.count())
                .where(t.devices.c.revoked_at.is_(None))
                .group_by(t.devices.c.role)
            ).all()
        )
    )
    scopes = [Scope("fleet", "*", len(failures), sum(roles.values()))]
    failing_roles = Counter(f.role for f in failures.values())
    scopes += [Scope("role", role, n, roles[role]) for role, n in failing_roles.items()]
    by_commit = Counter(f.commit for f in failures.values() if f.commit)
    active = [
        Rollout.from_row(r)
        for r in conn.execute(
            sa.select(t.rollouts)
            .where(t.rollouts.c.state.in_(("running", "halted")))
            .order_by(t.rollouts.c.id.desc())
        )
    ]
    for ro in active:
        if not by_commit.get(ro.commit):
            continue
        targeted = current_step(ctx, conn, ro)["targeted"]
        failing = by_commit[ro.commit]
        scopes.append(Scope("commit", ro.commit, failing, max(targeted, failing)))
    judged = [
        (rank(cfg.level(s.rate)), s.rate, s)
        for s in scopes
        if s.failing >= cfg.min_devices and s.population
    ]
    worst = max(judged, key=lambda j: (j[0], j[1]), default=None)
    level = None if worst is None or worst[0] == 0 else LEVELS[worst[0] - 1]
    scope = None if worst is None else worst[2]
    commit = _suspect(by_commit, active)
    on_commit = [f for f in failures.values() if commit is None or f.commit == commit]
    return Reading(
        config=cfg,
        failures=tuple(failures.values()),
        level=level,
        scope=scope,
        commit=commit,
        roles=tuple(sorted({f.role for f in on_commit})),
        pattern=pattern(conn, list(failures.values()), cfg.window_seconds) if level else {},
    )


def _suspect(by_commit: Counter[str], active: Sequence[Rollout]) -> str | None:
    """The commit most failures point to; among equals, the newest rollout's."""
    if not by_commit:
        return None
    order = {ro.commit: index for index, ro in enumerate(active)}
    return max(by_commit, key=lambda c: (by_commit[c], -order.get(c, len(order))))


def pattern(conn: Connection, failures: list[Failure], window: float) -> dict[str, Any]:
    """What the failures share (``patterns.analyse``), over the whole fleet."""
    population = [
        DeviceFacts(device_id=r.device_id, role=r.role, labels=labels_of(r.labels))
        for r in conn.execute(
            sa.select(t.devices.c.device_id, t.devices.c.role, t.devices.c.labels).where(
                t.devices.c.revoked_at.is_(None)
            )
        )
    ]
    labels = {d.device_id: d.labels for d in population}
    failed = [
        DeviceFailure(
            device_id=f.device_id,
            role=f.role,
            error=f.error,
            labels=labels.get(f.device_id, {}),
            at=f.at,
        )
        for f in failures
    ]
    return analyse(failed, population, window)


def reading_json(reading: Reading) -> dict[str, Any]:
    scope = reading.scope
    return {
        "level": reading.level,
        "failing": len(reading.failures),
        "scope": None
        if scope is None
        else {
            "kind": scope.kind,
            "name": scope.name,
            "failing": scope.failing,
            "devices": scope.population,
            "rate": round(scope.rate, 4),
        },
        "commit": reading.commit,
    }


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
