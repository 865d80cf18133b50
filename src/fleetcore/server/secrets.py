"""The server's secrets API: the seed's second secrets strategy.

Operators keep secrets per role (and per device, winning over the role's
of the same name) on the server (never in the repository), set
and rotate them without a commit, and every read and change is written to the
audit log (names, never values). Values are encrypted at rest with Fernet
under the server's secrets key: ``FLEETCORE_SECRETS_KEY`` when set (the same
key for every replica sharing one PostgreSQL), else ``secrets.key`` in the
data folder, created with mode 0600 on first use. A device reads only its own
role's secrets, with its own credential; operators can list names, never read
values back.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from attrs import field, frozen

from fleetcore.config.convert import checked
from fleetcore.server import bodies as b
from fleetcore.server import schema as t
from fleetcore.server.auth import Caller, DeviceCaller, Operator
from fleetcore.server.context import Context
from fleetcore.server.store import device_row

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

KEY_ENV = "FLEETCORE_SECRETS_KEY"
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VALUE = 64 * 1024


def _value(_inst: Any, attr: Any, value: str) -> None:
    if len(value.encode()) > MAX_VALUE:
        raise ValueError(f"{attr.name} is larger than {MAX_VALUE} bytes")
    if "\n" in value or "\0" in value:
        raise ValueError(f"{attr.name} must be one line (it becomes an environment value)")


@frozen(kw_only=True)
class SecretRequest:
    value: str = field(validator=checked(_value))
    reason: str = ""


def load_key(data_dir: Path) -> bytes:
    """The secrets key: from the environment, else the data folder's key file."""
    from cryptography.fernet import Fernet

    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    path = data_dir / "secrets.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
    return path.read_bytes().strip()


class RoleSecrets:
    def __init__(self, ctx: Context, key: bytes) -> None:
        from cryptography.fernet import Fernet

        self.ctx = ctx
        self.fernet: Fernet = Fernet(key)

    @staticmethod
    def _name(name: str) -> str:
        if not NAME.match(name):
            raise b.ApiError(
                400, f"secret names are environment variable names, got {name!r}", "name"
            )
        return name

    @staticmethod
    def _table(scope: str) -> tuple[sa.Table, sa.Column[Any]]:
        """Where secrets of a ``role`` or of one ``device`` are kept, and their key."""
        if scope == "device":
            return t.device_secrets, t.device_secrets.c.device_id
        return t.role_secrets, t.role_secrets.c.role

    def set(
        self, op: Operator, owner: str, name: str, req: SecretRequest, scope: str = "role"
    ) -> dict[str, Any]:
        """Set or rotate secret ``name`` of a role (``scope="role"``) or of
        one device (``scope="device"``, which wins over its role's)."""
        op.require("admin")
        self._name(name)
        table, column = self._table(scope)
        token = self.fernet.encrypt(req.value.encode()).decode()
        with self.ctx.change(op.name, bump=False) as ch:
            conn, now = ch.conn, ch.at
            if scope == "device":
                device_row(conn, owner)
            key = (column == owner) & (table.c.name == name)
            existed = conn.execute(sa.select(table.c.name).where(key)).first()
            if existed:
                conn.execute(
                    table.update()
                    .where(key)
                    .values(ciphertext=token, updated_at=now, updated_by=op.name)
                )
            else:
                conn.execute(
                    table.insert().values(
                        {
                            column.name: owner,
                            "name": name,
                            "ciphertext": token,
                            "updated_at": now,
                            "updated_by": op.name,
                        }
                    )
                )
            ch.audit(
                "secrets.rotate" if existed else "secrets.set",
                target=f"{_prefix(scope)}{owner}/{name}",
                reason=req.reason,
            )
        return {scope: owner, "name": name, "updated_at": now}

    def unset(self, op: Operator, owner: str, name: str, reason: str, scope: str = "role") -> None:
        op.require("admin")
        table, column = self._table(scope)
        with self.ctx.change(op.name, bump=False) as ch:
            gone = ch.conn.execute(
                table.delete().where((column == owner) & (table.c.name == name))
            ).rowcount
            if not gone:
                raise b.ApiError(404, f"{scope} {owner!r} has no secret {name!r}", "name")
            ch.audit("secrets.unset", target=f"{_prefix(scope)}{owner}/{name}", reason=reason)

    def names(self, op: Operator, owner: str, scope: str = "role") -> list[dict[str, Any]]:
        op.require("viewer")
        table, column = self._table(scope)
        with self.ctx.store.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.name, table.c.updated_at, table.c.updated_by)
                .where(column == owner)
                .order_by(table.c.name)
            ).all()
        return [
            {"name": r.name, "updated_at": r.updated_at, "updated_by": r.updated_by} for r in rows
        ]

    def for_device(self, caller: Caller, device_id: str) -> dict[str, str]:
        """The device's role's secrets, and its own (which win by name)."""
        from cryptography.fernet import InvalidToken

        if not isinstance(caller, DeviceCaller) or caller.device_id != device_id:
            raise b.ApiError(403, "only the device itself reads its secrets", "device_id")
        caller.require_accepted()
        # A read, in the audit log too (names, never values).
        with self.ctx.change(f"device:{device_id}", bump=False) as ch:
            role = device_row(ch.conn, device_id).role
            rows = [
                *ch.conn.execute(
                    sa.select(t.role_secrets.c.name, t.role_secrets.c.ciphertext).where(
                        t.role_secrets.c.role == role
                    )
                ),
                *ch.conn.execute(
                    sa.select(t.device_secrets.c.name, t.device_secrets.c.ciphertext).where(
                        t.device_secrets.c.device_id == device_id
                    )
                ),
            ]
            try:
                values = {r.name: self.fernet.decrypt(r.ciphertext.encode()).decode() for r in rows}
            except InvalidToken:
                raise b.ApiError(
                    500,
                    "stored secrets do not open with this server's key "
                    f"(is {KEY_ENV} the one they were set with?)",
                ) from None
            ch.audit("secrets.read", target=role, detail={"names": sorted(values)})
        return values


def _prefix(scope: str) -> str:
    # Audit targets: "web/DB_PASSWORD" for a role's, "device:pi-1/DB_PASSWORD" for a device's.
    return "device:" if scope == "device" else ""
