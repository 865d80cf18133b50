"""Real servers for the fetcher tests: git over smart HTTP (``git http-backend``
behind a small threaded HTTP server), and a tarball server with Range
support that can cut a download short."""

from __future__ import annotations

import base64
import gzip
import io
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from fleetcore.plugin.types import Finding, SourceSettings
from fleetcore.release import Manifest, Unpacked, unpack
from fleetcore.testing.gitrepo import FleetRepo, GitDaemon
from fleetcore.testing.services import free_port, missing

# -- git over smart HTTP -------------------------------------------------------------


class _GitHttpHandler(BaseHTTPRequestHandler):
    server: _GitHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _cgi(self) -> None:
        body = self._body()
        if self.server.credentials is not None:
            expected = "Basic " + base64.b64encode(self.server.credentials.encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="fleet"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.server.base),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(path),
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        proc = subprocess.run(
            ["git", "http-backend"],
            check=False,
            input=body,
            env=env,
            capture_output=True,
            timeout=60,
        )
        head, _, content = proc.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


class _GitHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, base: Path) -> None:
        super().__init__(("127.0.0.1", 0), _GitHttpHandler)
        self.base = base
        self.credentials: str | None = None


@dataclass
class GitHttp:
    """Repositories under ``base`` served by real ``git http-backend``."""

    server: _GitHttpServer

    @property
    def base(self) -> Path:
        return self.server.base

    def url(self, repo: FleetRepo, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        port = self.server.server_address[1]
        return f"http://{at}127.0.0.1:{port}/{repo.path.relative_to(self.base)}"


@pytest.fixture(scope="session")
def git_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttp]:
    backend = subprocess.run(["git", "--exec-path"], check=False, capture_output=True, text=True)
    if shutil.which("git") is None or not Path(backend.stdout.strip(), "git-http-backend").exists():
        missing("git http-backend")
    server = _GitHttpServer(tmp_path_factory.mktemp("git-http"))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield GitHttp(server)
    server.shutdown()
    server.server_close()


# -- one fleet repo reachable four ways ---------------------------------------------------


@dataclass
class Remote:
    repo: FleetRepo
    url: str
    transport: str


@pytest.fixture
def make_remote(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], Remote]:
    """``make_remote(transport)``: a new fleet repo and the URL to reach it by
    ``path``, ``file``, ``daemon`` (git://) or ``http`` (smart HTTP)."""

    def make(transport: str) -> Remote:
        name = f"fleet-{uuid.uuid4().hex[:8]}"
        if transport == "path":
            repo = FleetRepo.create(tmp_path / name)
            return Remote(repo, str(repo.path), transport)
        if transport == "file":
            repo = FleetRepo.create(tmp_path / name)
            return Remote(repo, repo.url, transport)
        if transport == "daemon":
            daemon: GitDaemon = request.getfixturevalue("git_daemon")
            repo = FleetRepo.create(daemon.base / name)
            return Remote(repo, daemon.url(repo), transport)
        if transport == "http":
            http: GitHttp = request.getfixturevalue("git_http")
            repo = FleetRepo.create(http.base / name)
            return Remote(repo, http.url(repo), transport)
        raise AssertionError(transport)

    return make


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., SourceSettings]:
    def make(url: str, branch: str = "main", cache: str = "cache") -> SourceSettings:
        return SourceSettings(repo=url, branch=branch, cache_dir=tmp_path / cache)

    return make


# -- checking a fetched release -----------------------------------------------------------


def unpack_and_compare(fetched: Any, dest: Path) -> tuple[Unpacked, list[Finding]]:
    """Unpack as the agent does and compare with the fetcher's manifest."""
    manifest: Manifest = fetched.manifest
    unpacked = unpack(
        fetched.archive,
        dest,
        prefix=fetched.prefix,
        max_bytes=1 << 30,
        git_blobs=manifest.wants_git_blob,
    )
    return unpacked, manifest.compare(unpacked)


@pytest.fixture
def verify(tmp_path: Path) -> Callable[[Any], tuple[Unpacked, list[Finding]]]:
    counter = iter(range(1_000_000))
    return lambda fetched: unpack_and_compare(fetched, tmp_path / f"unpacked-{next(counter)}")


@pytest.fixture
def tamper() -> Callable[[Path, str], None]:
    return _tamper


def _tamper(archive: Path, member_name: str) -> None:
    """Change one byte of a file's content inside an archive (decompressing
    it if needed, so the tar itself stays readable)."""
    data = archive.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.getmember(member_name)
        offset = member.offset_data
    changed = bytearray(data)
    changed[offset] ^= 0x01
    archive.write_bytes(bytes(changed))


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    return free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


# -- a forge-like tarball server -----------------------------------------------------------


@dataclass
class Served:
    body: bytes
    etag: str | None = '"v1"'
    content_type: str = "application/octet-stream"


@dataclass
class TarballServer:
    """Serves ``files`` (path -> :class:`Served`) with Range and If-Range
    support. ``cut_after``: the next full or partial response of an archive
    stops after that many bytes (once). ``honour_range``: answer Range
    requests with 206 (else 200 and the whole body)."""

    port: int = 0
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)
    cut_after: int | None = None
    honour_range: bool = True
    credentials: str | None = None
    redirects: dict[str, str] = field(default_factory=dict)

    def url(self, path: str, userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"http://{at}127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: bytes, etag: str | None = '"v1"') -> None:
        self.files[path] = Served(body, etag)


def _tarball_handler(state: TarballServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append({"path": self.path, **dict(self.headers.items())})
            if self.path in state.redirects:
                self.send_response(302)
                self.send_header("Location", state.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if state.credentials is not None:
                expected = "Basic " + base64.b64encode(state.credentials.encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._empty(401)
                    return
            served = state.files.get(self.path)
            if served is None:
                self._empty(404)
                return
            body, start, status = served.body, 0, 200
            wanted = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if wanted and state.honour_range and (if_range is None or if_range == served.etag):
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            part = body[start:]
            self.send_response(status)
            self.send_header("Content-Type", served.content_type)
            self.send_header("Content-Length", str(len(part)))
            self.send_header("Accept-Ranges", "bytes")
            if served.etag:
                self.send_header("ETag", served.etag)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            # Recorded before writing: the client may have read it all, and
            # the test moved on, before this thread gets to run again.
            if state.cut_after is not None and state.cut_after < len(part):
                cut, state.cut_after = state.cut_after, None
                state.sent.append(cut)
                self.wfile.write(part[:cut])
                self.wfile.flush()
                # Drop the connection mid-body, as a flaky link would.
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            state.sent.append(len(part))
            self.wfile.write(part)

        def _empty(self, status: int) -> None:
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="forge"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


@pytest.fixture
def tarball_server() -> Iterator[TarballServer]:
    state = TarballServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _tarball_handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
