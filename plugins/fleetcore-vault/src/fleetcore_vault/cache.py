"""The last good Vault secrets of each release, encrypted to the device's age key.

``<state_dir>/secrets/vault/<commit>.age`` holds ``{"commit": ..., "values":
{...}, "fetched": ...}`` encrypted to the recipient of the cache identity
(an age X25519 identity, or an OpenSSH key with its ``.pub`` beside it).
A cache entry serves only the commit it was fetched for; the newest
:data:`KEEP` entries are kept.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from fleetcore_vault import VaultError

KEEP = 3


class CacheError(VaultError):
    """The cache could not be written or read."""


def folder(state_dir: Path) -> Path:
    return state_dir / "secrets" / "vault"


def _recipients(identity: Path) -> list[Any]:
    from fleetcore_age import keys

    found = keys.recipients_of_identity(identity)
    pub = identity.with_name(identity.name + ".pub")
    if not found and pub.is_file():
        found = [keys.read_recipient_file(pub)[0]]
    if not found:
        raise CacheError(f"cache_identity {identity} has no age key and no {pub.name} beside it")
    return [keys.parse_recipient(r, str(identity)) for r in found]


def store(state_dir: Path, identity: Path, commit: str, values: dict[str, str]) -> Path:
    from fleetcore_age import keys

    target = folder(state_dir) / f"{commit}.age"
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp = dt.datetime.now(dt.UTC).isoformat()
    plaintext = json.dumps({"commit": commit, "values": values, "fetched": stamp}).encode()
    keys.replace_private(target, keys.encrypt(plaintext, _recipients(identity)))
    entries = sorted(folder(state_dir).glob("*.age"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)
    return target


def load(state_dir: Path, identity: Path, commit: str) -> tuple[dict[str, str], str] | None:
    """The cached values of ``commit`` and when they were fetched, or None."""
    from fleetcore_age import keys

    path = folder(state_dir) / f"{commit}.age"
    if not path.is_file():
        return None
    plaintext = keys.decrypt(path.read_bytes(), keys.load_identities(identity), str(path))
    try:
        data = json.loads(plaintext)
    except ValueError:
        raise CacheError(f"{path}: not a secrets cache") from None
    if data.get("commit") != commit or not isinstance(data.get("values"), dict):
        # A file renamed or copied from another release: never serve it.
        raise CacheError(f"{path}: cached for another release, not used")
    return {str(k): str(v) for k, v in data["values"].items()}, str(data.get("fetched", "?"))
