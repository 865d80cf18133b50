"""The last good Vault secrets of each release, encrypted with a key of the device.

``<state_dir>/secrets/vault/<commit>.cache`` holds ``{"commit": ..., "values":
{...}, "fetched": ...}`` encrypted with AES-256-GCM (``cryptography``). The
key is derived (HKDF-SHA256) from the private key material of the cache
identity: an age identity's ``AGE-SECRET-KEY-1...`` lines or an OpenSSH
private key. Whoever cannot read the identity file cannot read the cache; a
new identity makes the old entries unreadable, which only means fetching
again.

The file starts with a clear header naming the format and the commit; both
are bound to the ciphertext (associated data), so an entry copied to another
commit's name, or altered, is refused. An entry serves only the commit it was
fetched for; the newest :data:`KEEP` entries are kept.

Entries written by fleetcore-vault 0.1 (``<commit>.age``, encrypted with age)
are not read: they count as absent, and are deleted at the next store.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from fleetcore_vault import VaultError

KEEP = 3
SUFFIX = ".cache"
MAGIC = b"fleetcore-vault-cache/1"
NONCE_BYTES = 12
SSH_PRIVATE_MARK = "-----BEGIN OPENSSH PRIVATE KEY-----"
AGE_SECRET_PREFIX = "AGE-SECRET-KEY-1"  # noqa: S105 - a format marker


class CacheError(VaultError):
    """The cache could not be written or read."""


def folder(state_dir: Path) -> Path:
    return state_dir / "secrets" / "vault"


def _key(identity: Path) -> bytes:
    """32 bytes derived from the identity's private key material (comments
    and blank lines left out, so re-saving the file keeps the key)."""
    try:
        text = identity.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise CacheError(f"cache_identity {identity} does not exist") from None
    except OSError as exc:
        raise CacheError(f"cache_identity {identity} cannot be read: {exc.strerror}") from None
    if SSH_PRIVATE_MARK in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        lines = [
            line.strip() for line in text.splitlines() if line.strip().startswith(AGE_SECRET_PREFIX)
        ]
    if not lines:
        raise CacheError(
            f"cache_identity {identity} holds no private key (an age identity or an "
            "OpenSSH private key)"
        )
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=MAGIC, info=b"vault secrets cache")
    return kdf.derive("\n".join(lines).encode())


def _header(commit: str) -> bytes:
    return MAGIC + b" " + commit.encode() + b"\n"


def store(state_dir: Path, identity: Path, commit: str, values: dict[str, str]) -> Path:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from fleetcore.plugin import atomic_write

    key = _key(identity)
    target = folder(state_dir) / f"{commit}{SUFFIX}"
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = dt.datetime.now(dt.UTC).isoformat()
    plaintext = json.dumps({"commit": commit, "values": values, "fetched": stamp}).encode()
    header = _header(commit)
    nonce = os.urandom(NONCE_BYTES)
    atomic_write(target, header + nonce + AESGCM(key).encrypt(nonce, plaintext, header), mode=0o600)
    entries = sorted(
        folder(state_dir).glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for old in [*entries[KEEP:], *folder(state_dir).glob("*.age")]:
        old.unlink(missing_ok=True)
    return target


def load(state_dir: Path, identity: Path, commit: str) -> tuple[dict[str, str], str] | None:
    """The cached values of ``commit`` and when they were fetched, or None."""
    path = folder(state_dir) / f"{commit}{SUFFIX}"
    if not path.is_file():
        return None
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = path.read_bytes()
    header, newline, rest = data.partition(b"\n")
    header += newline
    if not newline or not header.startswith(MAGIC + b" ") or len(rest) <= NONCE_BYTES:
        raise CacheError(f"{path}: not a secrets cache")
    if header != _header(commit):
        # A file renamed or copied from another release: never serve it.
        raise CacheError(f"{path}: cached for another release, not used")
    nonce, ciphertext = rest[:NONCE_BYTES], rest[NONCE_BYTES:]
    try:
        plaintext = AESGCM(_key(identity)).decrypt(nonce, ciphertext, header)
    except InvalidTag:
        raise CacheError(
            f"{path}: cannot be decrypted with cache_identity {identity} "
            "(written with another key, or altered)"
        ) from None
    try:
        data_ = json.loads(plaintext)
    except ValueError:
        raise CacheError(f"{path}: not a secrets cache") from None
    if data_.get("commit") != commit or not isinstance(data_.get("values"), dict):
        raise CacheError(f"{path}: cached for another release, not used")
    return {str(k): str(v) for k, v in data_["values"].items()}, str(data_.get("fetched", "?"))
