"""Identities, recipients, encryption and decryption with age (``pyrage``).

An identity file holds either age X25519 secret keys (``AGE-SECRET-KEY-1...``,
one a line, ``#`` comments allowed: what ``age-keygen`` and ``fleetcore
secrets keygen`` write) or an unencrypted OpenSSH private key (ed25519 or
RSA). A recipient is one line: ``age1...`` or ``ssh-ed25519 ...``
(``ssh-rsa ...`` works too).

Errors name the file and the reason; they never carry key material or
plaintext.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from fleetcore_age import CorruptFile, IdentityError, NotForThisDevice, RecipientError

AGE_SECRET_PREFIX = "AGE-SECRET-KEY-1"  # noqa: S105 - a format marker
SSH_PRIVATE_MARK = "-----BEGIN OPENSSH PRIVATE KEY-----"
SSH_RECIPIENT_TYPES = ("ssh-ed25519", "ssh-rsa")


def pyrage() -> ModuleType:
    """The ``pyrage`` module, or a clear error when it is not installed."""
    try:
        import pyrage as module
    except ImportError:  # pragma: no cover - depends on the installation
        from fleetcore_age import AgeError

        raise AgeError(
            "the age library is not installed: pip install fleetcore-age (it brings pyrage)"
        ) from None
    return module


def load_identities(path: Path) -> list[Any]:
    """The identities in ``path`` (age X25519 keys or one OpenSSH private key)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"identity {path} does not exist") from None
    except OSError as exc:
        raise IdentityError(f"identity {path} cannot be read: {exc.strerror}") from None
    age = pyrage()
    text = data.decode("utf-8", errors="replace")
    if SSH_PRIVATE_MARK in text:
        try:
            return [age.ssh.Identity.from_buffer(data)]
        except Exception:
            raise IdentityError(
                f"identity {path} is not a usable OpenSSH private key "
                "(passphrase-protected keys are not supported)"
            ) from None
    identities = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(AGE_SECRET_PREFIX):
            raise IdentityError(
                f"identity {path} line {number} is not an age secret key (AGE-SECRET-KEY-1...)"
            )
        try:
            identities.append(age.x25519.Identity.from_str(line))
        except Exception:
            raise IdentityError(
                f"identity {path} line {number} is not a valid age secret key"
            ) from None
    if not identities:
        raise IdentityError(f"identity {path} holds no key")
    return identities


def parse_recipient(line: str, source: str) -> Any:
    """One recipient (``age1...``, ``ssh-ed25519 ...``); ``source`` names it in errors."""
    age = pyrage()
    line = line.strip()
    try:
        if line.startswith("age1"):
            return age.x25519.Recipient.from_str(line)
        if line.split(" ", 1)[0] in SSH_RECIPIENT_TYPES:
            return age.ssh.Recipient.from_str(line)
    except Exception as exc:
        raise RecipientError(f"{source}: not a valid recipient ({exc})") from None
    raise RecipientError(
        f"{source}: not a recipient age understands (expected age1... or ssh-ed25519 ...)"
    )


def read_recipient_file(path: Path, *, display: str | None = None) -> tuple[str, Any]:
    """The one recipient of a ``.pub`` file: its text and the parsed recipient."""
    name = display or str(path)
    lines = [
        line.strip()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    if len(lines) != 1:
        raise RecipientError(f"{name}: expected one recipient line, found {len(lines)}")
    return lines[0], parse_recipient(lines[0], name)


def encrypt(data: bytes, recipients: Sequence[Any]) -> bytes:
    if not recipients:
        raise RecipientError("no recipients to encrypt to")
    return bytes(pyrage().encrypt(data, list(recipients)))


def decrypt(data: bytes, identities: Sequence[Any], name: str) -> bytes:
    """Decrypt ``data`` (binary or armored age) read from ``name``."""
    age = pyrage()
    try:
        return bytes(age.decrypt(data, list(identities)))
    except age.DecryptError as exc:
        reason = str(exc)
        if "No matching keys" in reason:
            raise NotForThisDevice(
                f"{name}: not encrypted to this device's key (re-encrypt it with "
                "`fleetcore secrets encrypt` or `rekey` after adding the device's key)"
            ) from None
        raise CorruptFile(
            f"{name}: not a valid age file (corrupt or truncated: {reason})"
        ) from None


def generate() -> tuple[str, str]:
    """A new X25519 identity: the identity file's text and its recipient."""
    identity = pyrage().x25519.Identity.generate()
    recipient = str(identity.to_public())
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    text = f"# created: {created}\n# public key: {recipient}\n{identity}\n"
    return text, recipient


def recipients_of_identity(path: Path) -> list[str]:
    """The recipients matching an age identity file (X25519 keys only)."""
    out = []
    for identity in load_identities(path):
        if hasattr(identity, "to_public"):
            out.append(str(identity.to_public()))
    return out


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; refuse an existing file
    or a symlink. The content never exists with wider permissions."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (a temporary file
    beside it, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        write_private(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
