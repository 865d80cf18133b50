"""The fleet repo's keys, and encrypting a role's secrets to them.

Layout::

    keys/<role>/<device_id>.pub    one recipient line per device (age1... or ssh-ed25519 ...)
    keys/operators/<name>.pub      operators' recipients: they can decrypt every secret
    roles/<role>/...NAME.age       the encrypted files the devices of <role> decrypt

A device's public key filed under its role is what makes it a reader of that
role's secrets; removing the file and running ``fleetcore secrets rekey``
makes every new version of the secrets unreadable to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import frozen

from fleetcore_age import AgeError, RecipientError

OPERATORS = "operators"


@frozen(kw_only=True)
class Recipient:
    kind: str
    """``device`` or ``operator``."""
    name: str
    """The device id or the operator's file name (without ``.pub``)."""
    text: str
    """The recipient line (public: ``age1...`` or ``ssh-ed25519 ...``)."""
    file: str
    """Where it was read, relative to the repo."""
    parsed: Any

    def as_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "recipient": self.text, "file": self.file}


def check_role_name(role: str) -> None:
    if not role or role == OPERATORS or not all(c.isalnum() or c in "-_." for c in role):
        raise AgeError(
            f"{role!r} is not a role name (letters, digits, '-', '_', '.'; not 'operators')"
        )
    if role.startswith("."):
        raise AgeError(f"{role!r} is not a role name")


def _read(repo: Path, folder: Path, kind: str) -> list[Recipient]:
    from fleetcore_age import keys

    out: list[Recipient] = []
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.pub")):
        rel = path.relative_to(repo).as_posix()
        text, parsed = keys.read_recipient_file(path, display=rel)
        out.append(Recipient(kind=kind, name=path.stem, text=text, file=rel, parsed=parsed))
    return out


def recipients(repo: Path, role: str) -> list[Recipient]:
    """The devices of ``role`` and the operators, in that order."""
    check_role_name(role)
    devices = _read(repo, repo / "keys" / role, "device")
    if not devices:
        raise RecipientError(
            f"no device keys for role {role!r}: add keys/{role}/<device_id>.pub to the repo "
            "(`fleetcore secrets keygen` on the device prints its key)"
        )
    return devices + _read(repo, repo / "keys" / OPERATORS, "operator")


def encrypt_to(repo: Path, role: str, data: bytes, relname: str) -> tuple[Path, list[Recipient]]:
    """Encrypt ``data`` as ``roles/<role>/<relname>.age``; returns the file and recipients."""
    from fleetcore_age import keys

    target = role_file(repo, role, relname)
    readers = recipients(repo, role)
    ciphertext = keys.encrypt(data, [r.parsed for r in readers])
    target.parent.mkdir(parents=True, exist_ok=True)
    _replace_public(target, ciphertext)
    return target, readers


def role_file(repo: Path, role: str, relname: str) -> Path:
    check_role_name(role)
    rel = Path(relname.removesuffix(".age") + ".age")
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise AgeError(f"{relname!r}: the name in the role must be a relative path inside it")
    base = (repo / "roles" / role).resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise AgeError(f"{relname!r}: leads out of roles/{role}")
    return base / rel


def encrypted_in(repo: Path, role: str) -> list[Path]:
    from fleetcore_age.plugin import encrypted_files

    folder = repo / "roles" / role
    return list(encrypted_files(folder)) if folder.is_dir() else []


def roles_with_secrets(repo: Path) -> list[str]:
    roles = repo / "roles"
    if not roles.is_dir():
        return []
    return [p.name for p in sorted(roles.iterdir()) if p.is_dir() and encrypted_in(repo, p.name)]


def rekey(repo: Path, roles: Sequence[str], identity: Path) -> list[tuple[str, list[Recipient]]]:
    """Re-encrypt every ``.age`` of ``roles`` to their current recipients.

    Everything is decrypted (in memory) before anything is written, so a file
    the operator cannot read leaves the repo unchanged."""
    from fleetcore_age import keys

    identities = keys.load_identities(identity)
    plan: list[tuple[Path, bytes, list[Recipient]]] = []
    for role in roles:
        readers = recipients(repo, role)
        for path in encrypted_in(repo, role):
            rel = path.relative_to(repo).as_posix()
            if path.is_symlink():
                raise AgeError(f"{rel}: is a symbolic link; not rekeyed")
            plaintext = keys.decrypt(path.read_bytes(), identities, rel)
            plan.append((path, plaintext, readers))
    done = []
    for path, plaintext, readers in plan:
        _replace_public(path, keys.encrypt(plaintext, [r.parsed for r in readers]))
        done.append((path.relative_to(repo).as_posix(), readers))
    return done


def _replace_public(path: Path, data: bytes) -> None:
    import os

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
