"""The server's durable state: SQLAlchemy Core on SQLite or PostgreSQL.

The :class:`Store` opens the database and brings its schema (``schema.py``)
up to date; besides, the statements shared by the services: settings, the
generation, tokens, bulk device updates, audit entries.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from attrs import frozen
from sqlalchemy.engine import Connection, Engine

from fleetcore.server.bodies import ApiError

# The tables live in schema.py; they are named here too, for the code that
# reads them as ``store.devices``.
from fleetcore.server.schema import (  # noqa: F401
    MIGRATIONS,
    audit,
    create_tables,
    decisions,
    device_policies,
    devices,
    history,
    metadata,
    role_secrets,
    rollouts,
    schema_migrations,
    settings,
    stables,
    tokens,
)


@frozen(kw_only=True)
class EnrollmentScope:
    """What an enrollment token allows beyond its device role: the segment
    (None: any), how many enrollments (None: until it expires), and whether
    the devices it enrolls wait for an admin's acceptance."""

    segment: str | None = None
    max_uses: int | None = None
    require_approval: bool = False

    def detail(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "max_uses": self.max_uses,
            "require_approval": self.require_approval,
        }


@functools.cache
def _update_each(keys: tuple[str, ...]) -> sa.Update:
    return (
        devices.update()
        .where(devices.c.device_id == sa.bindparam("v_device_id"))
        .values({k: sa.bindparam(f"v_{k}") for k in keys})
    )


@functools.cache
def _update_from_json(keys: tuple[str, ...]) -> sa.Update:
    columns = [sa.column(c, devices.c[c].type) for c in ("device_id", *keys)]
    rows = (
        sa.func.json_to_recordset(sa.cast(sa.bindparam("rows", type_=sa.Text), sa.JSON))
        .table_valued(*columns)
        .render_derived(name="v", with_types=True)
    )
    return (
        devices.update()
        .values({k: rows.c[k] for k in keys})
        .where(devices.c.device_id == rows.c.device_id)
    )


def update_devices(
    conn: Connection, keys: tuple[str, ...], values: dict[str, dict[str, Any]]
) -> None:
    """Set ``keys`` on many devices at once: ``values`` maps a device id to
    its new values.

    SQLite runs one statement for every row (sqlite3 loops in C, in-process).
    PostgreSQL gets one statement for the whole batch, its rows sent as one
    JSON document that the database turns back into rows: one round trip
    instead of one per row, and the encoding done by the json module's C
    code rather than per value in Python."""
    if not values:
        return
    if conn.dialect.name == "postgresql":
        rows = [{"device_id": device_id, **row} for device_id, row in values.items()]
        conn.execute(_update_from_json(keys), {"rows": json.dumps(rows)})
        return
    conn.execute(
        _update_each(keys),
        [
            {"v_device_id": device_id, **{f"v_{k}": row[k] for k in keys}}
            for device_id, row in values.items()
        ],
    )


def hash_secret(secret: str) -> str:
    """Tokens and credentials are random and long: a plain SHA-256 is enough
    and lets us look them up by hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def database_url(data_dir: Path, url: str | None) -> str:
    if url:
        if url.startswith("postgresql://"):
            return "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'fleetcore.db'}"


_BUMPED = "fleetcore_generation_bumped"


POOL_SIZE = 40
POOL_OVERFLOW = 10
"""Database connections one server holds at most: POOL_SIZE kept, and
POOL_OVERFLOW more opened and closed at a peak (docs/server.md: a
PostgreSQL's ``max_connections`` must cover every replica's)."""


class Store:
    """The database, with its schema brought up to date on open."""

    def __init__(self, url: str) -> None:
        self.changes = 0
        """Committed transactions of this process that bumped the generation."""
        self.url = url
        self.sqlite = url.startswith("sqlite")
        # As many pooled connections as worker threads may run at once
        # (anyio's 40), and a few for the engine, the device writer and the
        # relay: past the pool's size, every checkout opens a connection and
        # closes it again. On PostgreSQL that is a new backend process each
        # time: at 10,000 devices a pool of 10 forked about 30 a second.
        # Connections open only as load needs them, so a quiet server holds few.
        pool = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
        if self.sqlite:
            self.engine: Engine = sa.create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, **pool
            )

            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                # WAL lets readers (polls, the dashboard) run while a report is written.
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
        else:
            # No pre-ping: it costs a round trip per request; recycle instead.
            self.engine = sa.create_engine(url, pool_recycle=300, **pool)
        self.migrate()

    def migrate(self) -> None:
        with self.engine.begin() as conn:
            if not self.engine.dialect.has_table(conn, "schema_migrations"):
                schema_migrations.create(conn)
        with self.engine.begin() as conn:
            if not self.sqlite:
                # Two servers starting at once on one PostgreSQL: one migrates.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7462001)"))
            done = {r[0] for r in conn.execute(sa.select(schema_migrations.c.version))}
            if not done:
                # A new database gets today's schema at once (the tables
                # above); the migrations bring older databases up to it.
                create_tables(conn)
                conn.execute(
                    schema_migrations.insert(),
                    [
                        {"version": v, "applied_at": time.time()}
                        for v in range(1, len(MIGRATIONS) + 1)
                    ],
                )
                return
            for version, migration in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                migration(conn)
                conn.execute(
                    schema_migrations.insert().values(version=version, applied_at=time.time())
                )

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar() or 0
            )

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            conn.info.pop(_BUMPED, None)
            yield conn
            bumped = conn.info.pop(_BUMPED, False)
        if bumped:
            # Committed: whatever this process cached of the generation is old.
            self.changes += 1

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # -- settings ------------------------------------------------------------------

    @staticmethod
    def get_setting(conn: Connection, key: str, default: Any = None) -> Any:
        row = conn.execute(_SETTING, {"key": key}).first()
        return json.loads(row[0]) if row else default

    @staticmethod
    def set_setting(conn: Connection, key: str, value: Any) -> None:
        text = json.dumps(value)
        updated = conn.execute(settings.update().where(settings.c.key == key).values(value=text))
        if updated.rowcount == 0:
            conn.execute(settings.insert().values(key=key, value=text))

    def bump_generation(self, conn: Connection) -> int:
        """Every change that can move any device's desired state bumps this
        number; it is the desired state's ETag, so a poll that hits is one
        primary-key read."""
        current = int(self.get_setting(conn, "generation", 0))
        self.set_setting(conn, "generation", current + 1)
        conn.info[_BUMPED] = True
        return current + 1

    def generation(self, conn: Connection) -> int:
        return int(self.get_setting(conn, "generation", 0))

    @staticmethod
    def generation_of(stored: str | None) -> int:
        """The generation from the text :data:`GENERATION` reads (None: never bumped)."""
        return int(json.loads(stored)) if stored is not None else 0

    # -- tokens ----------------------------------------------------------------------

    def create_token(
        self,
        kind: str,
        role: str | None,
        *,
        name: str = "",
        ttl: float | None = None,
        actor: str = "server-cli",
        now: float | None = None,
        scope: EnrollmentScope | None = None,
    ) -> str:
        now = time.time() if now is None else now
        expires_at = now + ttl if ttl else None
        _, token = self.issue_token(
            kind, role, name=name, expires_at=expires_at, actor=actor, now=now, scope=scope
        )
        return token

    def issue_token(
        self,
        kind: str,
        role: str | None,
        *,
        name: str = "",
        expires_at: float | None = None,
        actor: str = "server-cli",
        now: float | None = None,
        scope: EnrollmentScope | None = None,
    ) -> tuple[int, str]:
        """A new token and its id; only the token's hash is stored. An
        enrollment token's ``role`` is the device role it may enroll (None:
        any), and ``scope`` the rest of what it allows."""
        prefix = {"operator": "fco", "enrollment": "fce"}[kind]
        token = new_secret(prefix)
        now = time.time() if now is None else now
        scope = scope or EnrollmentScope()
        with self.begin() as conn:
            inserted = conn.execute(
                tokens.insert().values(
                    token_hash=hash_secret(token),
                    kind=kind,
                    role=role,
                    name=name or f"{kind}-{now:.0f}",
                    created_at=now,
                    created_by=actor,
                    expires_at=expires_at,
                    revoked=False,
                    segment=scope.segment,
                    max_uses=scope.max_uses,
                    uses=0,
                    require_approval=scope.require_approval,
                )
            ).inserted_primary_key
            assert inserted is not None
            token_id = int(inserted[0])
            write_audit(
                conn,
                actor=actor,
                action=f"token.create.{kind}",
                target=role or "",
                detail={"id": token_id, "name": name, **scope.detail()},
                at=now,
            )
        return token_id, token

    def list_tokens(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every operator and enrollment token, oldest first: never a hash."""
        now = time.time() if now is None else now
        with self.connect() as conn:
            rows = conn.execute(sa.select(tokens).order_by(tokens.c.id))
            return [token_json(row, now) for row in rows]

    def revoke_token(
        self, token_id: int, *, actor: str, reason: str = "", now: float | None = None
    ) -> dict[str, Any]:
        """Revoke a token for good: every request checks ``revoked`` in the
        database (operator tokens are never cached), so it is refused at once
        by every server sharing the database."""
        now = time.time() if now is None else now
        with self.begin() as conn:
            row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).first()
            if row is None:
                raise ApiError(404, f"unknown token {token_id}", "id")
            # Conditional, so that of two admins revoking at once one is told 409.
            updated = conn.execute(
                tokens.update()
                .where(tokens.c.id == token_id, tokens.c.revoked == sa.false())
                .values(revoked=True, revoked_at=now, revoked_by=actor)
            ).rowcount
            if updated == 0:
                raise ApiError(409, f"token {token_id} is already revoked", "id")
            write_audit(
                conn,
                actor=actor,
                action="token.revoke",
                target=str(token_id),
                reason=reason,
                detail={"kind": row.kind, "role": row.role, "name": row.name},
                at=now,
            )
            row = conn.execute(sa.select(tokens).where(tokens.c.id == token_id)).one()
        return token_json(row, now)


def _iso(value: float | None) -> str | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


def token_json(row: Any, now: float) -> dict[str, Any]:
    """What may be shown of a token: everything but its hash."""
    if row.revoked:
        state = "revoked"
    elif row.expires_at is not None and row.expires_at < now:
        state = "expired"
    elif row.max_uses is not None and row.uses >= row.max_uses:
        state = "used-up"
    else:
        state = "active"
    item = {
        "id": row.id,
        "kind": row.kind,
        "role": row.role,
        "name": row.name,
        "state": state,
        "created_at": _iso(row.created_at),
        "created_by": row.created_by,
        "expires_at": _iso(row.expires_at),
        "revoked": bool(row.revoked),
        "revoked_at": _iso(row.revoked_at),
        "revoked_by": row.revoked_by,
    }
    if row.kind == "enrollment":
        # An enrollment token's scope (its device role is ``role``).
        item["segment"] = row.segment
        item["max_uses"] = row.max_uses
        item["uses"] = row.uses
        item["require_approval"] = bool(row.require_approval)
    return item


# Statements read on every request, built once: composing one per call cost
# more CPU than running it.
_SETTING = sa.select(settings.c.value).where(settings.c.key == sa.bindparam("key"))
_DEVICE = sa.select(devices).where(devices.c.device_id == sa.bindparam("device_id"))
_POLICY = sa.select(device_policies).where(device_policies.c.device_id == sa.bindparam("device_id"))

GENERATION = sa.select(settings.c.value).where(settings.c.key == "generation").scalar_subquery()
"""The generation's stored text, for a statement that reads it with other
rows (see :meth:`Store.generation_of`)."""


def unknown_device(device_id: str) -> ApiError:
    return ApiError(404, f"unknown device {device_id!r}", "device_id")


def device_row(conn: Connection, device_id: str) -> Any:
    """A device's row, or a 404 naming it."""
    row = conn.execute(_DEVICE, {"device_id": device_id}).first()
    if row is None:
        raise unknown_device(device_id)
    return row


def policy_row(conn: Connection, device_id: str) -> Any:
    """A device's policy row, or None when nothing was ever set for it."""
    return conn.execute(_POLICY, {"device_id": device_id}).first()


def write_audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str = "",
    reason: str = "",
    detail: dict[str, Any] | None = None,
    at: float | None = None,
) -> None:
    conn.execute(
        audit.insert().values(
            at=at if at is not None else time.time(),
            actor=actor,
            action=action,
            target=target,
            reason=reason,
            detail=json.dumps(detail or {}, default=str),
        )
    )
