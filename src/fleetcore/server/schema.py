"""The server's tables and their numbered migrations.

One schema, one code path for SQLite and PostgreSQL: times are stored as
epoch seconds (floats) and structured values as JSON text, so nothing depends
on a database's date or JSON types. Schema changes are ordered migration
functions, applied by :meth:`fleetcore.server.store.Store.migrate` and
recorded in ``schema_migrations``.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("device_id", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(200), nullable=False),
    sa.Column("segment", sa.String(50), nullable=False),
    sa.Column("hostname", sa.String(255)),
    sa.Column("credential_hash", sa.String(64), nullable=False),
    sa.Column("enrolled_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float),
    sa.Column("status", sa.String(20), nullable=False, default="unknown"),
    sa.Column("commit", sa.String(64)),
    sa.Column("agent_version", sa.String(100)),
    sa.Column("uptime_seconds", sa.Float),
    sa.Column("last_update", sa.String(64)),
    sa.Column("last_update_result", sa.String(50)),
    sa.Column("current_error", sa.Text),
    sa.Column("ip_address", sa.String(100)),
    sa.Column("cpu_percent", sa.Float),
    sa.Column("memory_percent", sa.Float),
    sa.Column("disk_percent", sa.Float),
    sa.Column("network_kbps", sa.Float),
    sa.Column("mode", sa.String(50)),
    sa.Column("pending_commit", sa.String(64)),
    # Set when an admin revoked the credential; enrolling again clears it.
    sa.Column("revoked_at", sa.Float),
    # JSON object of the device's labels ({"hardware": "pi4"}); NULL: none sent yet.
    sa.Column("labels", sa.Text),
    # [server] branch of the device's agent.toml: it follows that branch.
    sa.Column("branch", sa.String(255)),
    # JSON object: the report's network byte rates and containers (migration 11).
    sa.Column("metrics", sa.Text),
    # Enrolled with a token that requires an admin's acceptance, not yet
    # accepted: no desired state, no archives, no secrets.
    sa.Column("pending", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
)

# The log lines a device uploaded when an operator asked (View logs): the
# latest upload per device only.
device_logs = sa.Table(
    "device_logs",
    metadata,
    sa.Column("device_id", sa.String(200), primary_key=True),
    sa.Column("taken_at", sa.String(64), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("lines", sa.Text, nullable=False),  # JSON list of strings
)

device_policies = sa.Table(
    "device_policies",
    metadata,
    sa.Column("device_id", sa.String(200), primary_key=True),
    sa.Column("auto_update", sa.Boolean, nullable=False, default=True),
    sa.Column("branch", sa.String(255)),
    sa.Column("lock_commit", sa.String(64)),
    sa.Column("lock_reason", sa.Text),
    sa.Column("locked_by", sa.String(200)),
    sa.Column("locked_until", sa.Float),
    sa.Column("maintenance_window", sa.Text),
    # Operators' "resume" actions: a device in safe mode leaves it when this grows.
    sa.Column("resumes", sa.Integer, nullable=False, default=0, server_default="0"),
    # Operators' "enter safe mode" actions: the device enters it when this grows.
    sa.Column("safe_mode_holds", sa.Integer, nullable=False, default=0, server_default="0"),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(20), nullable=False),  # operator | enrollment
    sa.Column("role", sa.String(20)),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
    # NULL on tokens issued before these columns existed.
    sa.Column("created_by", sa.String(200)),
    sa.Column("revoked_at", sa.Float),
    sa.Column("revoked_by", sa.String(200)),
    # Enrollment tokens' scope: the device role (in ``role``) and segment a
    # device may enroll with (NULL: any), how often the token may be used
    # (NULL: until it expires), and whether devices wait for an admin.
    sa.Column("segment", sa.String(50)),
    sa.Column("max_uses", sa.Integer),
    sa.Column("uses", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column(
        "require_approval", sa.Boolean, nullable=False, default=False, server_default=sa.false()
    ),
)

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("role", sa.String(200)),  # NULL: every role
    sa.Column("commit", sa.String(64), nullable=False),
    sa.Column("strategy", sa.String(100), nullable=False),
    sa.Column("steps", sa.Text, nullable=False),  # JSON [{"options", "wait_seconds"}]
    sa.Column("step", sa.Integer, nullable=False, default=0),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("auto_promote", sa.Boolean, nullable=False, default=True),
    sa.Column("created_by", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("step_started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    # JSON list of the roles in the commit: a rollout to every role skips
    # devices whose role the commit does not have.
    sa.Column("roles", sa.Text),
)

decisions = sa.Table(
    "rollout_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rollout_id", sa.Integer, nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

stables = sa.Table(
    "stables",
    metadata,
    sa.Column("role", sa.String(200), primary_key=True),  # "*": every role
    sa.Column("commit", sa.String(64), nullable=False),
    sa.Column("rollout_id", sa.Integer),
    sa.Column("at", sa.Float, nullable=False),
)

history = sa.Table(
    "history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_id", sa.String(200), nullable=False, index=True),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("from_commit", sa.String(64)),
    sa.Column("to_commit", sa.String(64)),
    sa.Column("result", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("duration_seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("received_at", sa.Float, nullable=False),
    # The agent resends entries it is not sure arrived: the same entry twice is one row.
    sa.UniqueConstraint("device_id", "timestamp", "to_commit", "result", name="history_once"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(300), nullable=False, default=""),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
)


role_secrets = sa.Table(
    "role_secrets",
    metadata,
    sa.Column("role", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    # Fernet (AES-128-CBC + HMAC) with the server's secrets key: encrypted at rest.
    sa.Column("ciphertext", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False, default=""),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("level", sa.String(20), nullable=False),  # warning | critical | emergency
    sa.Column("state", sa.String(20), nullable=False),  # open | resolved
    sa.Column("opened_at", sa.Float, nullable=False),
    sa.Column("opened_by", sa.String(200), nullable=False, default=""),
    # The last time detection saw the failures over a threshold: an
    # incident below emergency resolves itself a window after that.
    sa.Column("seen_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float),
    sa.Column("commit", sa.String(64)),  # the suspected commit
    sa.Column("scope", sa.Text, nullable=False, default=""),  # what tripped it, in words
    sa.Column("failure_rate", sa.Float, nullable=False, default=0.0),
    # JSON: roles, failed device ids, the pattern, the actions taken
    sa.Column("roles", sa.Text, nullable=False, default="[]"),
    sa.Column("failed_devices", sa.Text, nullable=False, default="[]"),
    sa.Column("pattern", sa.Text, nullable=False, default="{}"),
    sa.Column("actions", sa.Text, nullable=False, default="[]"),
)

device_secrets = sa.Table(
    "device_secrets",
    metadata,
    # A device's own secrets; a name here wins over its role's secret of that name.
    sa.Column("device_id", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("ciphertext", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False, default=""),
)

reenroll_approvals = sa.Table(
    "reenroll_approvals",
    metadata,
    # An admin's one-time permission to enroll an existing device id again
    # with an enrollment token; used up by that enrollment, or expired.
    sa.Column("device_id", sa.String(200), primary_key=True),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Column("approved_by", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)


def create_tables(conn: Connection) -> None:
    """Today's schema, at once (a new database)."""
    metadata.create_all(
        conn, tables=[t for t in metadata.sorted_tables if t is not schema_migrations]
    )


_migration_1 = create_tables


def _migration_2(conn: Connection) -> None:
    # Status queries (dashboard, metrics, offline marking) filter on these.
    # Plain SQL: an sa.Index object would attach itself to the shared metadata.
    for name, table, column in (
        ("devices_role", "devices", "role"),
        ("devices_last_seen", "devices", "last_seen"),
        ("history_to_commit", "history", "to_commit"),
    ):
        conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({column})"))


def _migration_3(conn: Connection) -> None:
    # Every device request looks its credential up by hash.
    conn.execute(
        sa.text("CREATE UNIQUE INDEX IF NOT EXISTS devices_credential ON devices (credential_hash)")
    )


def _migration_4(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE rollouts ADD COLUMN roles TEXT"))


def _migration_6(conn: Connection) -> None:
    conn.execute(
        sa.text("ALTER TABLE device_policies ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0")
    )


def _migration_5(conn: Connection) -> None:
    # The secrets API (a new database gets the table from migration 1).
    role_secrets.create(conn, checkfirst=True)


def _migration_7(conn: Connection) -> None:
    # Listing and revoking tokens and device credentials.
    for table, column, kind in (
        ("tokens", "created_by", "VARCHAR(200)"),
        ("tokens", "revoked_at", "FLOAT"),
        ("tokens", "revoked_by", "VARCHAR(200)"),
        ("devices", "revoked_at", "FLOAT"),
    ):
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


def _migration_8(conn: Connection) -> None:
    # Device labels, sent with the enrollment and the status reports.
    conn.execute(sa.text("ALTER TABLE devices ADD COLUMN labels TEXT"))


def _migration_9(conn: Connection) -> None:
    # The branch a device's agent.toml says to follow ([server] branch).
    conn.execute(sa.text("ALTER TABLE devices ADD COLUMN branch VARCHAR(255)"))


def _migration_10(conn: Connection) -> None:
    # Blast-radius incidents (a new database gets the table from migration 1),
    # and the index its detection reads the window of history through.
    incidents.create(conn, checkfirst=True)
    conn.execute(sa.text("CREATE INDEX IF NOT EXISTS history_received_at ON history (received_at)"))


def _migration_11(conn: Connection) -> None:
    # Device metrics beyond the percentages: network byte rates, containers.
    conn.execute(sa.text("ALTER TABLE devices ADD COLUMN metrics TEXT"))


def _migration_12(conn: Connection) -> None:
    # The dashboard's "Enter safe mode" (the desired state's safe_mode count).
    conn.execute(
        sa.text("ALTER TABLE device_policies ADD COLUMN safe_mode_holds INTEGER NOT NULL DEFAULT 0")
    )


def _migration_13(conn: Connection) -> None:
    # The dashboard's "View logs": each device's latest upload.
    device_logs.create(conn, checkfirst=True)


def _migration_14(conn: Connection) -> None:
    # Enrollment that cannot take a device over: scoped, counted enrollment
    # tokens, devices pending acceptance, one-time re-enrollment approvals,
    # and per-device secrets.
    for table, column, kind in (
        ("tokens", "segment", "VARCHAR(50)"),
        ("tokens", "max_uses", "INTEGER"),
        ("tokens", "uses", "INTEGER NOT NULL DEFAULT 0"),
        ("tokens", "require_approval", "BOOLEAN NOT NULL DEFAULT FALSE"),
        ("devices", "pending", "BOOLEAN NOT NULL DEFAULT FALSE"),
    ):
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
    device_secrets.create(conn, checkfirst=True)
    reenroll_approvals.create(conn, checkfirst=True)


MIGRATIONS: list[Callable[[Connection], None]] = [
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
    _migration_9,
    _migration_10,
    _migration_11,
    _migration_12,
    _migration_13,
    _migration_14,
]
"""Ordered; version N is ``MIGRATIONS[N-1]``. Append, never edit one that
shipped; the table definitions above are always the newest schema."""
