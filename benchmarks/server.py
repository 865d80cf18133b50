"""The control server under load, from a load generator in a second process.

    python benchmarks/server.py [--quick] [--streams N]

For SQLite and (when installed) PostgreSQL, against one `fleetcore server
run` process on loopback:

- status reports persisted per second and their p50/p99 latency, against a
  bare endpoint on the same uvicorn (the cost of the HTTP stack alone);
- desired-state polls per second that hit the ETag (304);
- (SQLite) concurrent idle SSE streams held by the one server process, and
  how long one event (a fleet pin) takes to reach every stream.

The load generator (``_load.py``) keeps ``CONNECTIONS`` keep-alive
connections busy from one asyncio loop; it spends little CPU per request, so
on a two-core machine the server gets most of a core. Next to each rate is
the server's own CPU time per request, read from /proc, which depends less
on what else the machine is doing.

Every loop is bounded by a duration or a count.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import _load
from _common import FLEETCORE, table

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.postgres import Postgres
from fleetcore.testing.services import free_port, wait_for_port

SSE_ROUNDS = 3
CONNECTIONS = 32
"""Requests in flight at once: many devices report at the same moment."""


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


class ServerProcess:
    def __init__(self, root: Path, repo: Path, db: str | None) -> None:
        self.data = root / "data"
        self.port = free_port()
        self.db = ["--db", db] if db else []
        self.repo = repo
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [*FLEETCORE, "server", *args, "--data-dir", str(self.data), *self.db],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        return out.stdout.strip()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*FLEETCORE, "--log-level", "WARNING", "server", "run", "--data-dir", str(self.data),
             "--repo", str(self.repo), "--listen", f"127.0.0.1:{self.port}", *self.db],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if not wait_for_port(self.port, 30):
            raise RuntimeError("server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(20)


def _request(
    conn: http.client.HTTPConnection, method: str, path: str, token: str,
    body: Any = None, headers: dict[str, str] | None = None,
) -> tuple[int, bytes, dict[str, str]]:  # fmt: skip
    data = None if body is None else json.dumps(body).encode()
    h = {"Authorization": f"Bearer {token}", **(headers or {})}
    if data is not None:
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=h)
    response = conn.getresponse()
    return response.status, response.read(), dict(response.getheaders())


def _requests(kind: str, devices: list[tuple[str, str]], etag: str) -> list[_load.Request]:
    """Each device's request for ``kind``, encoded once before the clock starts."""
    out: list[_load.Request] = []
    for n, (device_id, cred) in enumerate(devices):
        if kind == "bare":
            out.append((_load.request_bytes("POST", "/v1/bare", cred, {"status": "healthy"}), 204))
        elif kind == "status":
            body = {"status": "healthy", "commit": "0" * 40, "cpu_percent": 12.5,
                    "memory_percent": 40.0, "uptime_seconds": 1000 + n}  # fmt: skip
            path = f"/v1/devices/{device_id}/status"
            out.append((_load.request_bytes("POST", path, cred, body), 204))
        elif kind == "desired_etag":
            # The device polls with the ETag of its last answer: nothing changed.
            path = f"/v1/devices/{device_id}/desired"
            head = {"If-None-Match": etag}
            out.append((_load.request_bytes("GET", path, cred, headers=head), 304))
        else:
            out.append((_load.request_bytes("GET", f"/v1/devices/{device_id}/desired", cred), 200))
    return out


def _cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(
    port: int, kind: str, devices: list[tuple[str, str]], seconds: float, etag: str = "",
    pid: int | None = None,
) -> dict[str, float]:  # fmt: skip
    """``CONNECTIONS`` keep-alive connections from one load process."""
    requests = _requests(kind, devices, etag)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        cpu = _cpu_seconds(pid)
        started = time.perf_counter()
        lat = sorted(pool.apply(_load.run, ((port, requests, seconds, CONNECTIONS),)))
        wall = time.perf_counter() - started
        cpu = _cpu_seconds(pid) - cpu
    return {
        "requests_per_s": len(lat) / seconds,
        "server_cpu_us": 1e6 * cpu / len(lat),
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[int(len(lat) * 0.99) - 1],
        "requests": len(lat),
        "wall_s": wall,
    }


def enroll(port: int, token: str, count: int, prefix: str) -> list[tuple[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for i in range(count):
        device_id = f"{prefix}-{i:05d}"
        body = {"enrollment_token": token, "device_id": device_id, "role": "web"}
        status, raw, _ = _request(conn, "POST", "/v1/enroll", "", body)
        if status != 201:
            raise RuntimeError(f"enroll: HTTP {status} {raw[:200]!r}")
        out.append((device_id, json.loads(raw)["credential"]))
    return out


def _rss_mib(pid: int | None) -> float:
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _sse_fanout(
    port: int, viewer: str, admin: str, devices: list[str], commit: str, pid: int | None = None
) -> dict[str, float]:
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for device_id in devices:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /v1/devices/{device_id}/events HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {viewer}\r\nAccept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        opened.append((reader, writer))
    # Each stream answers with its headers and a first comment once registered.
    for reader, _ in opened:
        await asyncio.wait_for(reader.readuntil(b": connected\n\n"), 60)
    server_rss = _rss_mib(pid)  # the server, holding every stream open
    received: list[float] = []

    async def wait(reader: asyncio.StreamReader) -> None:
        await asyncio.wait_for(reader.readuntil(b"event: policy-changed"), 120)
        received.append(time.perf_counter())

    waiting = [asyncio.create_task(wait(r)) for r, _ in opened]
    start = time.perf_counter()

    def pin() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        body = {"commit": commit, "reason": "benchmark"}
        status, raw, _ = _request(conn, "PUT", "/v1/fleet/pin", admin, body)
        if status != 200:
            raise RuntimeError(f"pin: HTTP {status} {raw[:200]!r}")

    await asyncio.to_thread(pin)
    answered = time.perf_counter()
    await asyncio.gather(*waiting)
    for _, writer in opened:
        writer.close()
    return {
        "streams": len(opened),
        "pin_answered_ms": 1000 * (answered - start),
        "last_event_ms": 1000 * (max(received) - start),
        "first_event_ms": 1000 * (min(received) - start),
        "server_rss_mib": server_rss,
    }


def bench_database(label: str, db: str | None, repo: Path, seconds: float, devices: int,
                   streams: int) -> dict[str, Any]:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="fleetcore-bench-server-") as tmp:
        server = ServerProcess(Path(tmp), repo, db)
        server.cli("token", "create", "--role", "admin")
        viewer = server.cli("token", "create", "--role", "viewer")
        admin = server.cli("token", "create", "--role", "admin")
        enrollment = server.cli("enrollment-token")
        server.start()
        try:
            devs = enroll(server.port, enrollment, devices, "dev")
            result: dict[str, Any] = {"database": label}
            pid = server.proc.pid if server.proc else None
            result["bare"] = load(server.port, "bare", devs, seconds, pid=pid)
            result["status"] = load(server.port, "status", devs, seconds, pid=pid)
            result["desired_full"] = load(server.port, "desired_full", devs, seconds, pid=pid)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            _, _, got = _request(conn, "GET", f"/v1/devices/{devs[0][0]}/desired", devs[0][1])
            etag = {k.lower(): v for k, v in got.items()}["etag"]
            result["desired_etag"] = load(server.port, "desired_etag", devs, seconds, etag, pid=pid)
            if streams:
                more = enroll(server.port, enrollment, max(0, streams - devices), "sse")
                ids = [d for d, _ in devs + more][:streams]
                head = FleetRepo(repo).git("rev-parse", "HEAD")
                # Three rounds: a full pass of the garbage collector may or
                # may not fall inside the fan-out, and the spread shows it.
                result["sse"] = [
                    asyncio.run(_sse_fanout(server.port, viewer, admin, ids, head, pid))
                    for _ in range(SSE_ROUNDS)
                ]
            return result
        finally:
            server.stop()


def run(quick: bool = False, streams: int | None = None) -> dict[str, Any]:
    _raise_fd_limit()
    seconds = 3.0 if quick else 8.0
    devices = 100 if quick else 300
    streams = streams if streams is not None else (200 if quick else 1000)
    results = []
    with tempfile.TemporaryDirectory(prefix="fleetcore-bench-repo-") as tmp:
        repo = FleetRepo.create(Path(tmp) / "fleet")
        repo.commit({"roles/web/activate.sh": "#!/bin/sh\necho up\n"}, "first")
        results.append(bench_database("sqlite", None, repo.path, seconds, devices, streams))
        pg = Postgres.start()
        if pg is None:
            print("PostgreSQL not available: skipping it")
        else:
            try:
                url = pg.create_database("bench")
                results.append(bench_database("postgresql", url, repo.path, seconds, devices, 0))
            finally:
                pg.stop()
    rows = [["database", "endpoint", "req/s", "p50 ms", "p99 ms", "server CPU µs/req"]]
    for r in results:
        for key in ("bare", "status", "desired_full", "desired_etag"):
            m = r[key]
            rows.append([r["database"], key, f"{m['requests_per_s']:.0f}", f"{m['p50_ms']:.1f}",
                         f"{m['p99_ms']:.1f}", f"{m['server_cpu_us']:.0f}"])  # fmt: skip
    print(table(rows))
    for r in results:
        for s in r.get("sse", ()):
            print(
                f"SSE ({r['database']}): {s['streams']:.0f} idle streams in one server; one pin "
                f"answered in {s['pin_answered_ms']:.0f} ms, reached the last stream after "
                f"{s['last_event_ms']:.0f} ms; server resident memory "
                f"{s['server_rss_mib']:.0f} MiB"
            )
    return {"server": results, "cpus": os.cpu_count()}


if __name__ == "__main__":
    count = None
    if "--streams" in sys.argv:
        count = int(sys.argv[sys.argv.index("--streams") + 1])
    outcome = run(quick="--quick" in sys.argv, streams=count)
    out = Path(__file__).parent / "results" / "server.json"
    out.parent.mkdir(exist_ok=True)  # a fresh clone has no results folder
    out.write_text(json.dumps(outcome, indent=2))
