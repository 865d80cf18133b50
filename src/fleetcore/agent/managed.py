"""Managed mode: the agent's side of the control server's API.

The server decides the desired state (``GET /v1/devices/{id}/desired``, cheap
to poll with ETags), serves role archives and manifests, takes status reports
and update history, and pushes ``update-available`` and ``policy-changed``
events over SSE. Everything here uses the standard library: the agent stays
light on a Raspberry Pi.

When the server does not answer, the agent keeps running its current release
and its last known desired state; the network-partition modes apply to the
server exactly as they do to a git repository.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from fleetcore import __version__
from fleetcore.agent import archives
from fleetcore.agent.sampling import Resources
from fleetcore.config.agent import AgentConfig, Server
from fleetcore.config.convert import structure
from fleetcore.config.fleet import MaintenanceWindow
from fleetcore.errors import FetchError, FleetcoreError
from fleetcore.fetch.interface import Fetched
from fleetcore.files import atomic_write, atomic_write_json
from fleetcore.http import Client as HttpClient
from fleetcore.http import RedirectError, Response, StatusError, TransportError
from fleetcore.plugin.protocols import EVENT_NAMES
from fleetcore.plugin.types import CommitProof
from fleetcore.policy import DesiredState
from fleetcore.release import Manifest

log = logging.getLogger("fleetcore.agent")
API_DEADLINE = 4
"""An API call may take this many ``[server] timeout``s in all."""
ARCHIVE_DEADLINE = 600.0
"""The longest one archive download runs; a slower one resumes next try."""


class ServerRefused(FleetcoreError):
    """The server answered, and said no (bad credential, bad request)."""


def credential_path(config: AgentConfig) -> Path:
    assert config.server is not None
    return config.server.credential_file or config.state_dir / "credential"


class ServerClient:
    """Talks to the control server on behalf of one device."""

    def __init__(self, config: AgentConfig) -> None:
        assert config.server is not None
        self.settings: Server = config.server
        self.base = config.server.url.rstrip("/")
        self.device_id = config.device_id
        self.config = config
        self.cache = config.state_dir / "cache" / "server"
        self.progress: Callable[[str, int | None], Callable[[int], None]] | None = None
        """A meter factory when a command runs on a terminal (archive downloads)."""
        self._http = HttpClient(
            self.base,
            ca_file=config.server.ca_file,
            timeout=config.server.timeout.seconds,
            headers={"User-Agent": f"fleetcore-agent/{__version__}"},
        )

    # -- plumbing -------------------------------------------------------------------

    def credential(self) -> str:
        path = credential_path(self.config)
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise FleetcoreError(
                f"{path} does not exist: enroll the device first (`fleetcore agent enroll`)"
            ) from None

    def _open(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        timeout: float | None = None,
        deadline: float | None = -1.0,
    ) -> Response:
        """``deadline``: the most the whole exchange may take (-1: a few
        timeouts, for the API's small answers; None: no limit, the event
        stream). A server trickling bytes then cannot hold a cycle."""
        sent = dict(headers or {})
        if auth:
            sent["Authorization"] = f"Bearer {self.credential()}"
        try:
            # The configured server URL plus our own path, never a URL from a response.
            return self._http.request(
                method,
                path,
                json=body,
                headers=sent,
                timeout=timeout or self.settings.timeout.seconds,
                deadline=API_DEADLINE * self.settings.timeout.seconds
                if deadline == -1.0
                else deadline,
            )
        except RedirectError as exc:
            raise FetchError(
                f"the server redirected {method} {path} to {exc.location}; the agent follows "
                "no redirects: set [server] url to the address that answers"
            ) from None
        except StatusError as exc:
            detail = _error_text(exc)
            if exc.status in (401, 403):
                raise ServerRefused(
                    f"the server refused {method} {path} ({exc.status}): {detail}; "
                    "is the device enrolled?"
                ) from None
            if exc.status is not None and exc.status >= 500:
                raise FetchError(
                    f"server error on {method} {path} ({exc.status}): {detail}"
                ) from None
            raise ServerRefused(f"{method} {path} was refused ({exc.status}): {detail}") from None
        except TransportError as exc:
            raise FetchError(f"server {self.base} unreachable: {exc.reason}") from None

    # -- the API ----------------------------------------------------------------------

    def enroll(self, enrollment_token: str, *, hostname: str) -> str:
        with self._open(
            "POST",
            "/v1/enroll",
            auth=False,
            body={
                "enrollment_token": enrollment_token,
                "device_id": self.device_id,
                "role": self.config.role,
                "segment": self.config.segment,
                "hostname": hostname,
                "labels": dict(self.config.labels),
                "branch": self.config.server.branch if self.config.server else None,
            },
        ) as response:
            answer = json.loads(response.read())
        return self._keep(str(answer["credential"]))

    def rotate(self) -> str:
        """A new credential for this device, asked for with its current one:
        the server forgets the old one as it answers."""
        with self._open("POST", f"/v1/devices/{self._id()}/credential", body={}) as response:
            answer = json.loads(response.read())
        return self._keep(str(answer["credential"]))

    def _keep(self, credential: str) -> str:
        path = credential_path(self.config)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, credential.encode() + b"\n", mode=0o600)
        return credential

    def desired(self, *, fresh: bool = False) -> DesiredState:
        """The desired state, revalidated with the ETag of the last answer
        (``fresh``: asked for in full, e.g. right after a server event)."""
        cached_file = self.cache / "desired.json"
        cached = _read_json(cached_file)
        headers = {}
        if cached and cached.get("etag") and not fresh:
            headers = {"If-None-Match": cached["etag"]}
        response = self._open("GET", f"/v1/devices/{self._id()}/desired", headers=headers)
        issued_at = _issued_at(response.headers.get("X-Fleetcore-Issued-At"))
        with response:
            if response.status == 304 and cached:
                body = cached["body"]
            else:
                body = json.loads(response.read())
                self.cache.mkdir(parents=True, exist_ok=True)
                atomic_write_json(cached_file, {"etag": response.headers.get("ETag"), "body": body})
        window = body.get("maintenance_window")
        return DesiredState(
            commit=body.get("commit"),
            why=body.get("why") or "hold",
            reason=body.get("reason") or "",
            branch=body.get("branch"),
            resume=int(body.get("resume") or 0),
            safe_mode=int(body.get("safe_mode") or 0),
            rollout_strategy=(body.get("rollout") or {}).get("strategy"),
            rollout_options=(body.get("rollout") or {}).get("options"),
            issued_at=issued_at,
            maintenance_window=structure(
                window,
                MaintenanceWindow,
                source="the server's desired state",
                root="maintenance_window",
            )
            if window
            else None,
        )

    def report_status(self, report: Mapping[str, Any]) -> None:
        path = f"/v1/devices/{self._id()}/status"
        try:
            with self._open("POST", path, body=dict(report)):
                pass
        except ServerRefused as exc:
            # A server older than the agent refuses keys it does not know
            # (400 naming the key): it still gets everything else.
            newer = [k for k in NEWER_REPORT_KEYS if k in report and k in str(exc)]
            if not newer:
                raise
            log.debug("the server does not take %s yet", ", ".join(newer))
            older = {k: v for k, v in report.items() if k not in NEWER_REPORT_KEYS}
            with self._open("POST", path, body=older):
                pass

    def send_logs(self, taken_at: str, lines: Sequence[str]) -> None:
        """The recent log lines an operator asked for (``send-logs``)."""
        body = {"taken_at": taken_at, "lines": [line[:2000] for line in lines[-500:]]}
        with self._open("POST", f"/v1/devices/{self._id()}/logs", body=body):
            pass

    def send_history(self, entries: Sequence[Mapping[str, Any]]) -> None:
        if entries:
            with self._open(
                "POST", f"/v1/devices/{self._id()}/history", body={"entries": list(entries)}
            ):
                pass

    def proof(self, commit: str, role: str) -> CommitProof:
        import base64

        with self._open("GET", f"/v1/proofs/{_q(commit)}/{_q(role)}") as response:
            body = json.loads(response.read())
        try:
            return CommitProof(
                commit_object=base64.b64decode(body["commit_object"]),
                root_tree=base64.b64decode(body["root_tree"]),
                roles_tree=base64.b64decode(body["roles_tree"]),
            )
        except (KeyError, TypeError, ValueError):
            raise FetchError("the server's commit proof is malformed") from None

    def relation(self, old: str, new: str) -> str:
        with self._open("GET", f"/v1/relation/{_q(old)}/{_q(new)}") as response:
            body = json.loads(response.read())
        return str(body.get("relation"))

    def secrets(self) -> dict[str, str]:
        """This device's secrets for its role, from the server's secrets API."""
        with self._open("GET", f"/v1/devices/{self._id()}/secrets") as response:
            body = json.loads(response.read())
        values = body.get("values", {})
        if not isinstance(values, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in values.items()
        ):
            raise FetchError("the server's secrets answer is malformed")
        return dict(values)

    def manifest(self, commit: str, role: str) -> Manifest:
        with self._open("GET", f"/v1/manifests/{commit}/{_q(role)}") as response:
            return Manifest.from_json(
                json.loads(response.read()), source=f"{self.base} manifest of {role}@{commit[:12]}"
            )

    def archive(self, commit: str, role: str, dest: Path) -> Path:
        """Download a role archive, resuming a partial download with Range.

        Only a download that reached the size the server announced becomes
        the cached archive; one cut short stays ``.partial`` (the next try
        asks for the rest) and is never mistaken for a whole archive."""
        self.cache.mkdir(parents=True, exist_ok=True)
        partial = self.cache / f"{role}-{commit}.tar.partial"
        done = self.cache / f"{role}-{commit}.tar"
        if not done.exists():
            self._download(commit, role, partial)
            os.replace(partial, done)
        return archives.hand_over(done, dest, self.cache)

    def _download(self, commit: str, role: str, partial: Path) -> None:
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        path = f"/v1/archives/{commit}/{_q(role)}"
        try:
            response = self._open(
                "GET",
                path,
                headers=headers,
                timeout=max(60.0, self.settings.timeout.seconds),
                deadline=max(ARCHIVE_DEADLINE, 40 * self.settings.timeout.seconds),
            )
        except ServerRefused as exc:
            if have and "(416)" in str(exc):
                # The piece we hold is no prefix of this archive: start over.
                partial.unlink(missing_ok=True)
                raise FetchError(f"discarded a partial download of {role}@{commit[:12]}") from None
            raise
        with response:
            label = f"{role}@{commit[:12]}"
            archives.receive(response, partial, have, label, self.progress)

    def archive_cached(self, commit: str, role: str) -> bool:
        return (self.cache / f"{role}-{commit}.tar").exists()

    def forget_archives(self, keep: Sequence[str] = ()) -> None:
        """Remove downloaded archives (whole and partial) but those of the
        commits in ``keep``: to make room, or after one failed verification."""
        for path in [*self.cache.glob("*.tar"), *self.cache.glob("*.tar.partial")]:
            if not any(commit in path.name for commit in keep):
                path.unlink(missing_ok=True)

    def events(self, stop: threading.Event) -> Iterator[tuple[str, dict[str, Any]]]:
        """Server-sent events, until ``stop`` is set or the stream ends."""
        response = self._open(
            "GET",
            f"/v1/devices/{self._id()}/events",
            headers={"Accept": "text/event-stream"},
            timeout=60.0,
            deadline=None,
        )
        event, data = "message", list[str]()
        with response:
            while not stop.is_set():
                raw = response.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not line:
                    if data:
                        try:
                            payload = json.loads("\n".join(data))
                        except ValueError:
                            payload = {"data": "\n".join(data)}
                        yield event, payload if isinstance(payload, dict) else {"data": payload}
                    event, data = "message", []
                elif line.startswith(":"):
                    continue  # keep-alive
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

    def _id(self) -> str:
        return _q(self.device_id)


class ServerSource:
    """Releases from the control server (a :class:`fleetcore.fetch.interface.Source`)."""

    def __init__(self, client: ServerClient) -> None:
        self.client = client
        self._manifests: dict[tuple[str, str], Manifest] = {}

    def download_size(self, commit: str, role: str) -> int | None:
        """The archive's size before downloading it: its manifest's total."""
        if self.client.archive_cached(commit, role):
            return 0
        return self._manifest(commit, role).total_size

    def free_cache(self, keep: Sequence[str]) -> None:
        self.client.forget_archives(keep)

    def _room_for(self, commit: str, role: str) -> None:
        """Reading role.toml downloads the role's archive: not when it cannot fit."""
        import shutil

        size = self.download_size(commit, role) or 0
        self.client.cache.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.client.cache).free
        needed = 2 * size + self.client.config.disk.reserve.bytes
        if free < needed:
            raise FetchError(
                f"disk full: the archive of {role}@{commit[:12]} needs {needed} bytes free "
                f"(twice its {size} + the reserve), {free} are free"
            )

    def _manifest(self, commit: str, role: str) -> Manifest:
        if (commit, role) not in self._manifests:
            self._manifests = {(commit, role): self.client.manifest(commit, role)}
        return self._manifests[(commit, role)]

    def head(self, branch: str) -> str:
        desired = self.client.desired()
        if desired.commit is None:
            raise FetchError("the server names no commit for this device")
        return desired.commit

    def read(self, commit: str, paths: Sequence[str]) -> Mapping[str, bytes]:
        import tarfile
        import tempfile

        role_prefix = f"roles/{self.client.config.role}/"
        wanted = {p for p in paths if p.startswith(role_prefix)}
        if not wanted:
            return {}
        self._room_for(commit, self.client.config.role)
        with tempfile.TemporaryDirectory(dir=self.client.cache.parent) as tmp:
            archive = self.client.archive(commit, self.client.config.role, Path(tmp))
            out = {}
            with tarfile.open(archive) as tar:
                for name in wanted:
                    try:
                        handle = tar.extractfile(name)
                    except KeyError:
                        continue
                    if handle is not None:
                        out[name] = handle.read(1 << 20)
            return out

    def relation(self, old: str, new: str) -> str:
        """How ``new`` relates to ``old``, from the server's mirror (rollback protection)."""
        return self.client.relation(old, new)

    def proof(self, commit: str, role: str) -> CommitProof:
        """The commit's objects from the server, for a signature check: the
        device checks every hash itself, so the server need not be trusted."""
        return self.client.proof(commit, role)

    def fetch(self, commit: str, role: str, workdir: Path) -> Fetched:
        manifest = self._manifest(commit, role)
        archive = self.client.archive(commit, role, workdir)
        return Fetched(archive=archive, prefix=f"roles/{role}", manifest=manifest)


class EventListener:
    """A thread that holds the server's event stream open and wakes the agent."""

    def __init__(self, client: ServerClient, wake: Callable[[str], None]) -> None:
        self.client = client
        self.wake = wake
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fleetcore-events", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()

    def _run(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                for event, payload in self.client.events(self.stop):
                    delay = 1.0
                    if event in EVENT_NAMES:
                        log.info("server event %s %s", event, payload.get("commit", ""))
                        self.wake(event)
            except (FleetcoreError, OSError, ValueError) as exc:
                log.debug("event stream: %s", exc)
            # Reconnect with back-off: the server may be restarting.
            self.stop.wait(delay)
            delay = min(delay * 2, 60.0)


NEWER_REPORT_KEYS = (
    "network_receive_bytes_per_second",
    "network_transmit_bytes_per_second",
    "containers",
    "drift",
)
"""Status report keys that servers before device metrics refuse."""


def status_report(agent: Any) -> dict[str, Any]:
    """The seed's devices-table fields, as the server's status endpoint takes them."""
    from fleetcore.agent.report import status_report as local

    report = local(agent.config)
    last = report.get("last_update") or {}
    resources = agent.sampler.sample()
    containers = agent.probes.containers()
    return {
        "hostname": socket.gethostname(),
        "role": agent.config.role,
        "commit": report["commit"],
        "status": report["status"],
        "agent_version": __version__,
        "uptime_seconds": int(_uptime()),
        "last_update": last.get("timestamp"),
        "last_update_result": last.get("result"),
        # Drift left unfixed is an error; "no drift" is not.
        "current_error": report["status_reason"]
        or (report["drift_reason"] if report["drift"] == "left" else None)
        or None,
        "ip_address": _local_ip(agent.config.server.url if agent.config.server else ""),
        "cpu_percent": resources.cpu_percent,
        "memory_percent": resources.memory_percent,
        "disk_percent": resources.disk_percent,
        "network_kbps": _kbps(resources),
        "network_receive_bytes_per_second": resources.network_receive_bytes_per_second,
        "network_transmit_bytes_per_second": resources.network_transmit_bytes_per_second,
        "mode": report["mode"] if report["mode"] != "normal" else report["network"],
        "pending_commit": report["pending_commit"],
        # Every report: an edited [labels] reaches the server without enrolling again.
        "labels": dict(agent.config.labels),
        # So does [server] branch (None: back to rollouts).
        "branch": agent.config.server.branch if agent.config.server else None,
        # The last drift check, for the dashboard's "Check now".
        "drift": {
            "verdict": report["drift"],
            "reason": report["drift_reason"],
            "checked_at": report["last_deep_check"] or report["last_light_check"],
        },
    } | ({} if containers is None else {"containers": containers})


def _uptime() -> float:
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return time.monotonic()


def _kbps(resources: Resources) -> float | None:
    """Both directions in kilobits per second: what servers before the
    separate byte rates read."""
    rx = resources.network_receive_bytes_per_second
    tx = resources.network_transmit_bytes_per_second
    return None if rx is None or tx is None else round((rx + tx) * 8 / 1000, 1)


def _local_ip(url: str) -> str | None:
    """The address this device uses to reach the server (no packet is sent)."""
    host = urllib.parse.urlsplit(url).hostname or "192.0.2.1"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            return str(s.getsockname()[0])
    except OSError:
        return None


def _error_text(exc: StatusError) -> str:
    try:
        body = json.loads(exc.body or b"{}")
        return str(body.get("error") or body)
    except (ValueError, AttributeError):
        return exc.reason or str(exc.status)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _issued_at(header: str | None) -> dt.datetime | None:
    """The server's time on a desired state (None from servers that do not send it)."""
    if not header:
        return None
    try:
        value = dt.datetime.fromisoformat(header)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()
