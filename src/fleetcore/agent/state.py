"""The agent's on-disk state, and the rules for changing it safely.

Layout of the state folder::

    lock                  flock: one agent at a time
    state.json            this module's State, replaced atomically
    history.jsonl         update history, one JSON object per line
    current -> releases/<role>-<commit12>    the running release
    previous -> releases/...                 the one to go back to
    releases/<name>/      immutable release trees
    releases/<name>.manifest.json            what each tree held when verified
    staging/              work folders of an update in progress
    cache/                fetcher caches (e.g. a git mirror)

The ``current`` link is the truth about what runs; ``state.json`` records
metadata and, while an update is under way, its phase, so that the next run
after a crash knows what to finish or undo.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import attrs
from attrs import field, frozen

from fleetcore.files import append_line, atomic_symlink, atomic_write_json, read_lines_json
from fleetcore.plugin.types import UpdateRecord

log = logging.getLogger(__name__)

Status = Literal["unknown", "healthy", "degraded", "failed", "safe_mode", "updating"]
Mode = Literal["normal", "safe_mode"]
Network = Literal["online", "disconnected", "isolated", "airgapped"]
Phase = Literal[
    "fetch",
    "unpack",
    "verify",
    "secrets",
    "validate",
    "swap",
    "activate",
    "reboot",
    "health",
    "rollback",
]

STATE_VERSION = 1


@frozen(kw_only=True)
class InFlight:
    """An update under way: enough to finish or undo it after a crash."""

    to_commit: str
    from_commit: str | None
    release: str
    phase: Phase
    started: dt.datetime
    reason: str = ""
    from_release: str | None = None
    previous_release: str | None = None
    """What ``previous`` pointed at before the update, restored on rollback."""
    status_before: Status = "unknown"


@frozen(kw_only=True)
class State:
    version: int = STATE_VERSION
    status: Status = "unknown"
    status_reason: str = ""
    mode: Mode = "normal"
    mode_since: dt.datetime | None = None
    mode_reason: str = ""
    pending_commit: str | None = None
    in_flight: InFlight | None = None
    desired_commit: str | None = None
    desired_why: str = ""
    desired_reason: str = ""
    last_check: dt.datetime | None = None
    last_attempt: dt.datetime | None = None
    recent_attempts: tuple[dt.datetime, ...] = ()
    consecutive_failures: int = 0
    last_failure: dt.datetime | None = None
    last_update: UpdateRecord | None = None
    safe_mode_pin: str | None = None
    """The forced version seen when safe mode began: a new one lifts safe mode."""
    current_activator: str | None = None
    previous_activator: str | None = None
    network: Network = "online"
    network_since: dt.datetime | None = None
    unreachable_since: dt.datetime | None = None
    """When the fleet repo (or server) stopped answering; None while it answers."""
    last_contact: dt.datetime | None = None
    last_light_check: dt.datetime | None = None
    last_deep_check: dt.datetime | None = None
    resume_seen: int = 0
    """The server's resume count last seen (managed mode)."""
    safe_mode_seen: int = 0
    """The server's enter-safe-mode count last seen (managed mode)."""
    drift: str = "unknown"
    """The last drift run's verdict: clean, fixed, left (or unknown)."""
    drift_reason: str = ""
    desired_issued_at: dt.datetime | None = None
    """Managed mode: the server's time on the last desired state read."""


# state.json and history.jsonl are the agent's own data: converted by hand,
# without building a cattrs converter at every start of `agent once`.

_STATE_FIELDS = tuple(a.name for a in attrs.fields(State))
_STATE_TIMES = (
    "desired_issued_at",
    "mode_since",
    "last_check",
    "last_attempt",
    "last_failure",
    "network_since",
    "unreachable_since",
    "last_contact",
    "last_light_check",
    "last_deep_check",
)
_FLIGHT_FIELDS = tuple(a.name for a in attrs.fields(InFlight))
_RECORD_FIELDS = tuple(a.name for a in attrs.fields(UpdateRecord))


def _time_json(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected a date and time, got {value!r}")
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _fields(data: Any, names: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"{what}: expected an object, got {type(data).__name__}")
    extra = data.keys() - set(names)
    if extra:
        raise ValueError(f"{what}: unknown keys {sorted(extra)}")
    return dict(data)


def record_json(entry: UpdateRecord) -> dict[str, Any]:
    data = {name: getattr(entry, name) for name in _RECORD_FIELDS}
    data["timestamp"] = entry.timestamp.isoformat()
    return data


def record_of(data: Any) -> UpdateRecord:
    values = _fields(data, _RECORD_FIELDS, "history entry")
    values["timestamp"] = _time(values.get("timestamp"))
    return UpdateRecord(**values)


def _flight_json(flight: InFlight) -> dict[str, Any]:
    data = {name: getattr(flight, name) for name in _FLIGHT_FIELDS}
    data["started"] = flight.started.isoformat()
    return data


def state_json(state: State) -> dict[str, Any]:
    data = {name: getattr(state, name) for name in _STATE_FIELDS}
    for name in _STATE_TIMES:
        data[name] = _time_json(data[name])
    data["recent_attempts"] = [t.isoformat() for t in state.recent_attempts]
    data["in_flight"] = None if state.in_flight is None else _flight_json(state.in_flight)
    data["last_update"] = None if state.last_update is None else record_json(state.last_update)
    return data


def state_of(data: Any) -> State:
    values = _fields(data, _STATE_FIELDS, "state")
    for name in _STATE_TIMES:
        if values.get(name) is not None:
            values[name] = _time(values[name])
    values["recent_attempts"] = tuple(_time(t) for t in values.get("recent_attempts", ()))
    if values.get("in_flight") is not None:
        flight = _fields(values["in_flight"], _FLIGHT_FIELDS, "in_flight")
        flight["started"] = _time(flight.get("started"))
        values["in_flight"] = InFlight(**flight)
    if values.get("last_update") is not None:
        values["last_update"] = record_of(values["last_update"])
    return State(**values)


class StateStore:
    """Reads and writes one state folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_file = root / "state.json"
        self.history_file = root / "history.jsonl"
        self.releases = root / "releases"
        self.staging = root / "staging"
        self.cache = root / "cache"
        self.current_link = root / "current"
        self.previous_link = root / "previous"
        self.lock_file = root / "lock"

    def ensure(self) -> None:
        for folder in (self.root, self.releases, self.staging, self.cache):
            folder.mkdir(parents=True, exist_ok=True)

    # -- state.json --------------------------------------------------------------

    def load(self) -> State:
        if not self.state_file.exists():
            return State()
        try:
            data = json.loads(self.state_file.read_bytes())
            return state_of(data)
        except Exception as exc:
            # A corrupted state file must not stop the device: keep it for
            # inspection and start from what the links say.
            aside = self.state_file.with_name(
                f"state.json.corrupt-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
            )
            os.replace(self.state_file, aside)
            log.error(
                "state file was unreadable (%s); kept as %s, rebuilt from the release links",
                type(exc).__name__,
                aside.name,
            )
            return State(status="unknown", status_reason="state file was rebuilt")

    def save(self, state: State) -> None:
        atomic_write_json(self.state_file, state_json(state))

    def update(self, state: State, **changes: Any) -> State:
        new = attrs.evolve(state, **changes)
        self.save(new)
        return new

    # -- releases and links ------------------------------------------------------

    def release_dir(self, name: str) -> Path:
        return self.releases / name

    def manifest_file(self, name: str) -> Path:
        return self.releases / f"{name}.manifest.json"

    def snapshot_file(self, name: str) -> Path:
        """Sizes, times and modes of the release's files once activated."""
        return self.releases / f"{name}.stat.json"

    def remove_release(self, name: str) -> None:
        import shutil

        shutil.rmtree(self.release_dir(name), ignore_errors=True)
        self.manifest_file(name).unlink(missing_ok=True)
        self.snapshot_file(name).unlink(missing_ok=True)

    def link_target(self, link: Path) -> str | None:
        """The release name a link points at, or None if missing or dangling."""
        try:
            target = os.readlink(link)
        except (FileNotFoundError, OSError):
            return None
        name = Path(target).name
        if not (self.releases / name).is_dir():
            return None
        return name

    def current(self) -> str | None:
        return self.link_target(self.current_link)

    def previous(self) -> str | None:
        return self.link_target(self.previous_link)

    def point(self, link: Path, name: str | None) -> None:
        if name is None:
            link.unlink(missing_ok=True)
        else:
            atomic_symlink(link, Path("releases") / name)

    def commit_of(self, name: str | None) -> str | None:
        if name is None:
            return None
        try:
            return str(json.loads(self.manifest_file(name).read_bytes())["commit"])
        except (OSError, ValueError, KeyError):
            return None

    def release_names(self) -> list[str]:
        return sorted(p.name for p in self.releases.iterdir() if p.is_dir())

    # -- history -----------------------------------------------------------------

    def record(self, entry: UpdateRecord) -> None:
        append_line(self.history_file, json.dumps(record_json(entry), sort_keys=True))

    def history(self) -> list[UpdateRecord]:
        out = []
        for item in read_lines_json(self.history_file):
            try:
                out.append(record_of(item))
            except Exception as exc:  # an entry from a newer or damaged agent
                log.debug("skipping a history entry: %s", exc)
        return out


def release_name(role: str, commit: str) -> str:
    return f"{role}-{commit[:12]}"


def history_json(entry: UpdateRecord) -> dict[str, Any]:
    data = record_json(entry)
    return {
        k: data[k]
        for k in (
            "timestamp",
            "from_commit",
            "to_commit",
            "result",
            "reason",
            "duration_seconds",
            "device_id",
            "role",
            "event",
        )
    }


__all__ = ["InFlight", "State", "StateStore", "field", "history_json", "release_name"]
