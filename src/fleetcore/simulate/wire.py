"""A lean HTTP/1.1 client on asyncio: what thousands of virtual devices need.

The standard library has no asynchronous HTTP client, and a thread per
device does not reach 100,000 devices. This one does as little as a client
can: a pool of keep-alive connections shared by every device for ordinary
requests (each request borrows one, sends, reads the answer, gives it back),
and one connection per device for its server-sent event stream.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import random
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from typing import Any

from attrs import frozen

from fleetcore.errors import FleetcoreError


class WireError(FleetcoreError):
    """The server could not be reached, or answered something that is not HTTP."""


@frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


IDLE_SECONDS = 4.0
"""Idle connections older than this are not reused: servers close theirs
(uvicorn after 5 s), and a request on a closed one costs a round trip."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = time.monotonic()

    def close(self) -> None:
        self.writer.close()


class Endpoint:
    """Where the server is: host, port, TLS, and the ``Host`` header."""

    def __init__(self, url: str, *, ca_file: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WireError(f"--server: expected an http:// or https:// URL, got {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl.create_default_context(cafile=ca_file)
        self.host_header = parts.netloc

    async def connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl, limit=1 << 20
            )
        except OSError as exc:
            raise WireError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        return _Connection(reader, writer)

    def request_bytes(
        self, method: str, path: str, headers: Mapping[str, str], body: Any = None
    ) -> bytes:
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        lines = [f"{method} {self.base_path}{path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        elif method in ("POST", "PUT"):
            lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("the server closed the connection") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise WireError(f"not an HTTP answer: {lines[0][:80]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return status, headers


async def _read_chunk(reader: asyncio.StreamReader) -> bytes:
    size_line = await reader.readuntil(b"\r\n")
    size = int(size_line.split(b";")[0].strip(), 16)
    data = await reader.readexactly(size + 2)
    return data[:-2]


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while chunk := await _read_chunk(reader):
            parts.append(chunk)
        await reader.readuntil(b"\r\n")  # the (empty) trailer
        return b"".join(parts)
    length = int(headers.get("content-length", "0"))
    return await reader.readexactly(length) if length else b""


SAMPLE = 200_000
LATENCY_BOUNDS_MS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Pool:
    """Keep-alive connections shared by all devices, at most ``size`` at once."""

    def __init__(self, endpoint: Endpoint, size: int) -> None:
        self.endpoint = endpoint
        self.size = size
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)
        self.latencies: list[float] = []
        """A uniform sample of at most ``SAMPLE`` latencies (seconds), for
        percentiles: a run of 100,000 devices makes millions of requests."""
        self.requests = 0
        self.total_seconds = 0.0
        self.max_seconds = 0.0
        self._rng = random.Random(0)  # noqa: S311 - sampling, not a secret
        self.buckets = [0] * (len(LATENCY_BOUNDS_MS) + 1)
        """Requests by latency, per bound of ``LATENCY_BOUNDS_MS`` (and above):
        what a reader differencing two summaries takes percentiles from."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float = 30.0,
    ) -> Response:
        data = self.endpoint.request_bytes(method, path, headers or {}, body)
        # Timed from here: a real device has its own connection, so the time
        # spent waiting for one of the pool's is time the server kept it waiting.
        start = time.perf_counter()
        async with self._slots:
            # A kept-alive connection the server has meanwhile closed fails at
            # once: try again on a new one, once.
            for attempt in (1, 2):
                conn = self._idle_connection() if attempt == 1 else None
                conn = conn or await self.endpoint.connect()
                try:
                    response = await asyncio.wait_for(self._exchange(conn, data), timeout)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    conn.close()
                    if attempt == 2:
                        raise WireError(f"{method} {path}: {exc or 'connection closed'}") from None
                    continue
                except (TimeoutError, OSError) as exc:
                    conn.close()
                    raise WireError(f"{method} {path}: {type(exc).__name__} {exc}") from None
                took = time.perf_counter() - start
                self._record(took)
                self.buckets[bisect.bisect_left(LATENCY_BOUNDS_MS, took * 1000)] += 1
                if response.headers.get("connection", "").lower() == "close":
                    conn.close()
                else:
                    conn.used = time.monotonic()
                    self._idle.append(conn)
                return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _record(self, took: float) -> None:
        self.requests += 1
        self.total_seconds += took
        self.max_seconds = max(self.max_seconds, took)
        if len(self.latencies) < SAMPLE:
            self.latencies.append(took)
        else:  # reservoir sampling: every request stays in with the same chance
            slot = self._rng.randrange(self.requests)
            if slot < SAMPLE:
                self.latencies[slot] = took

    def _idle_connection(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.used < IDLE_SECONDS:
                return conn
            conn.close()
        return None

    @staticmethod
    async def _exchange(conn: _Connection, data: bytes) -> Response:
        conn.writer.write(data)
        status, headers = await _read_head(conn.reader)
        body = await _read_body(conn.reader, headers)
        return Response(status, headers, body)

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


async def event_stream(
    endpoint: Endpoint, path: str, headers: Mapping[str, str]
) -> AsyncIterator[tuple[str, str]]:
    """Server-sent events as ``(event, data)`` pairs, until the stream ends."""
    conn = await endpoint.connect()
    try:
        conn.writer.write(
            endpoint.request_bytes("GET", path, {**headers, "Accept": "text/event-stream"})
        )
        status, response_headers = await _read_head(conn.reader)
        if status != 200:
            body = await _read_body(conn.reader, response_headers)
            raise WireError(
                f"event stream answered {status}: {body[:200].decode(errors='replace')}"
            )
        chunked = response_headers.get("transfer-encoding", "").lower() == "chunked"
        buffer = b""
        event, data = "message", list[str]()
        while True:
            piece = await (_read_chunk(conn.reader) if chunked else conn.reader.read(65536))
            if not piece:
                return
            buffer += piece
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                if not line:
                    if data:
                        yield event, "\n".join(data)
                    event, data = "message", []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
    finally:
        conn.close()
