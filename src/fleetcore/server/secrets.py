"""The server's secrets API: the seed's second secrets strategy.

Operators keep secrets per role on the server (never in the repository), set
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
from fleetcore.server import store as t
from fleetcore.server.store import write_audit

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from fleetcore.server.service import Caller, Control, Operator

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
    def __init__(self, ctl: Control, key: bytes) -> None:
        from cryptography.fernet import Fernet

        self.ctl = ctl
        self.fernet: Fernet = Fernet(key)

    @staticmethod
    def _name(name: str) -> str:
        if not NAME.match(name):
            raise b.ApiError(
                400, f"secret names are environment variable names, got {name!r}", "name"
            )
        return name

    def set(self, op: Operator, role: str, name: str, req: SecretRequest) -> dict[str, Any]:
        op.require("admin")
        self._name(name)
        now = self.ctl.ts()
        token = self.fernet.encrypt(req.value.encode()).decode()
        with self.ctl.store.begin() as conn:
            key = (t.role_secrets.c.role == role) & (t.role_secrets.c.name == name)
            existed = conn.execute(sa.select(t.role_secrets.c.name).where(key)).first()
            if existed:
                conn.execute(
                    t.role_secrets.update()
                    .where(key)
                    .values(ciphertext=token, updated_at=now, updated_by=op.name)
                )
            else:
                conn.execute(
                    t.role_secrets.insert().values(
                        role=role, name=name, ciphertext=token, updated_at=now, updated_by=op.name
                    )
                )
            write_audit(
                conn,
                actor=op.name,
                action="secrets.rotate" if existed else "secrets.set",
                target=f"{role}/{name}",
                reason=req.reason,
                at=now,
            )
        return {"role": role, "name": name, "updated_at": now}

    def unset(self, op: Operator, role: str, name: str, reason: str) -> None:
        op.require("admin")
        with self.ctl.store.begin() as conn:
            gone = conn.execute(
                t.role_secrets.delete().where(
                    (t.role_secrets.c.role == role) & (t.role_secrets.c.name == name)
                )
            ).rowcount
            if not gone:
                raise b.ApiError(404, f"role {role!r} has no secret {name!r}", "name")
            write_audit(
                conn,
                actor=op.name,
                action="secrets.unset",
                target=f"{role}/{name}",
                reason=reason,
                at=self.ctl.ts(),
            )

    def names(self, op: Operator, role: str) -> list[dict[str, Any]]:
        op.require("viewer")
        with self.ctl.store.connect() as conn:
            rows = conn.execute(
                sa.select(
                    t.role_secrets.c.name, t.role_secrets.c.updated_at, t.role_secrets.c.updated_by
                )
                .where(t.role_secrets.c.role == role)
                .order_by(t.role_secrets.c.name)
            ).all()
        return [
            {"name": r.name, "updated_at": r.updated_at, "updated_by": r.updated_by} for r in rows
        ]

    def for_device(self, caller: Caller, device_id: str) -> dict[str, str]:
        from cryptography.fernet import InvalidToken

        from fleetcore.server.service import DeviceCaller

        if not isinstance(caller, DeviceCaller) or caller.device_id != device_id:
            raise b.ApiError(403, "only the device itself reads its secrets", "device_id")
        with self.ctl.store.begin() as conn:
            role = self.ctl._device_row(conn, device_id).role
            rows = conn.execute(
                sa.select(t.role_secrets.c.name, t.role_secrets.c.ciphertext).where(
                    t.role_secrets.c.role == role
                )
            ).all()
            try:
                values = {r.name: self.fernet.decrypt(r.ciphertext.encode()).decode() for r in rows}
            except InvalidToken:
                raise b.ApiError(
                    500,
                    "stored secrets do not open with this server's key "
                    f"(is {KEY_ENV} the one they were set with?)",
                ) from None
            write_audit(
                conn,
                actor=f"device:{device_id}",
                action="secrets.read",
                target=role,
                detail={"names": sorted(values)},
                at=self.ctl.ts(),
            )
        return values
