"""The releases in the state folder: their role.toml, their env file, the
light drift check's snapshot, and removing the ones no longer needed."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from fleetcore.activate.interface import ENV_FILE
from fleetcore.agent.results import UpdateFailed
from fleetcore.agent.state import StateStore
from fleetcore.config.role import RoleConfig, parse_role_config
from fleetcore.errors import ConfigError
from fleetcore.files import atomic_write
from fleetcore.release import measure_tree

log = logging.getLogger("fleetcore.agent")


def role_config_of(store: StateStore, release: str, *, strict: bool = False) -> RoleConfig:
    """The role.toml of an unpacked release. ``strict``: an invalid one is
    an error (a release being prepared); otherwise the defaults, so a
    release that already runs can always be started again."""
    path = store.release_dir(release) / "role.toml"
    try:
        return parse_role_config(path.read_bytes() if path.exists() else None, str(path))
    except ConfigError as exc:
        if strict:
            raise
        log.warning("%s", exc)
        return RoleConfig()


def read_env(store: StateStore, release: str) -> dict[str, str]:
    """The environment the release's secrets left in its env file."""
    path = store.release_dir(release) / ENV_FILE
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value
    return out


def write_env(path: Path, env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if "\n" in value or "\n" in key:
            raise UpdateFailed(f"secret {key!r} holds a newline, which env files cannot carry")
    atomic_write(path, "".join(f"{k}={v}\n" for k, v in env.items()).encode(), mode=0o600)


def drop_release(store: StateStore, name: str) -> None:
    """Remove a release, unless it is the current or the previous one."""
    if name in (store.current(), store.previous()):
        return
    store.remove_release(name)


def clean_releases(store: StateStore, keep_extra: tuple[str, ...] = ()) -> list[str]:
    """Remove every release but the current and the previous one."""
    keep = {store.current(), store.previous(), *keep_extra}
    removed = []
    for name in store.release_names():
        if name not in keep:
            store.remove_release(name)
            removed.append(name)
    return removed


def snapshot(release_dir: Path) -> dict[str, list[int]]:
    """Size, modification time and mode of every file: the light baseline."""
    measured = measure_tree(release_dir, deep=False)
    return {path: [m.size, m.mtime_ns or 0, m.mode] for path, m in measured.files.items()}


def write_snapshot(path: Path, release_dir: Path) -> None:
    atomic_write(path, json.dumps(snapshot(release_dir), sort_keys=True).encode())
