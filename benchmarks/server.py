"""The control server under load, from a load generator in other processes.

    python benchmarks/server.py [--quick] [--streams N]

For SQLite and (when installed) PostgreSQL, against one `fleetcore server
run` process on loopback:

- status reports persisted per second and their p50/p99 latency, against a
  bare endpoint on the same uvicorn (the cost of the HTTP stack alone);
- desired-state polls per second that hit the ETag (304);
- (SQLite) concurrent idle SSE streams held by the one server process, and
  how long one event (a fleet pin) takes to reach every stream.

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
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import FLEETCORE, table

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.postgres import Postgres
from fleetcore.testing.services import free_port, wait_for_port

PROCESSES = 2
THREADS = 8


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


def _worker(args: tuple[int, str, list[tuple[str, str]], float, int, str]) -> list[float]:
    """One load process: THREADS keep-alive connections for ``seconds``."""
    port, kind, devices, seconds, seed, etag = args
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        own: list[float] = []
        n = seed * 1000 + index
        while time.perf_counter() < deadline:
            device_id, cred = devices[n % len(devices)]
            n += THREADS
            start = time.perf_counter()
            if kind == "bare":
                status, _, _ = _request(conn, "POST", "/v1/bare", cred, {"status": "healthy"})
                ok = status == 204
            elif kind == "status":
                body = {"status": "healthy", "commit": "0" * 40, "cpu_percent": 12.5,
                        "memory_percent": 40.0, "uptime_seconds": n}  # fmt: skip
                status, _, _ = _request(conn, "POST", f"/v1/devices/{device_id}/status", cred, body)
                ok = status == 204
            elif kind == "desired_etag":
                # The device polls with the ETag of its last answer: nothing changed.
                path = f"/v1/devices/{device_id}/desired"
                status, _, _ = _request(conn, "GET", path, cred, headers={"If-None-Match": etag})
                ok = status == 304
            else:
                path = f"/v1/devices/{device_id}/desired"
                status, _, _ = _request(conn, "GET", path, cred)
                ok = status == 200
            if not ok:
                raise RuntimeError(f"{kind}: HTTP {status}")
            own.append(time.perf_counter() - start)
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def load(
    port: int, kind: str, devices: list[tuple[str, str]], seconds: float, etag: str = ""
) -> dict[str, float]:
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as pool:
        started = time.perf_counter()
        jobs = [(port, kind, devices, seconds, i, etag) for i in range(PROCESSES)]
        parts = pool.map(_worker, jobs)
        wall = time.perf_counter() - started
    lat = sorted(x for part in parts for x in part)
    return {
        "requests_per_s": len(lat) / seconds,
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
            result["bare"] = load(server.port, "bare", devs, seconds)
            result["status"] = load(server.port, "status", devs, seconds)
            result["desired_full"] = load(server.port, "desired_full", devs, seconds)
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            _, _, got = _request(conn, "GET", f"/v1/devices/{devs[0][0]}/desired", devs[0][1])
            etag = {k.lower(): v for k, v in got.items()}["etag"]
            result["desired_etag"] = load(server.port, "desired_etag", devs, seconds, etag)
            if streams:
                more = enroll(server.port, enrollment, max(0, streams - devices), "sse")
                ids = [d for d, _ in devs + more][:streams]
                head = FleetRepo(repo).git("rev-parse", "HEAD")
                pid = server.proc.pid if server.proc else None
                result["sse"] = asyncio.run(_sse_fanout(server.port, viewer, admin, ids, head, pid))
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
    rows = [["database", "endpoint", "req/s", "p50 ms", "p99 ms"]]
    for r in results:
        for key in ("bare", "status", "desired_full", "desired_etag"):
            m = r[key]
            rows.append([r["database"], key, f"{m['requests_per_s']:.0f}", f"{m['p50_ms']:.1f}",
                         f"{m['p99_ms']:.1f}"])  # fmt: skip
    print(table(rows))
    for r in results:
        if "sse" in r:
            s = r["sse"]
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
    out.write_text(json.dumps(outcome, indent=2))
