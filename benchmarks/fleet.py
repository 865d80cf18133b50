"""The control server carrying a simulated fleet, measured.

    python benchmarks/fleet.py [--devices 10000,30000] [--db sqlite,postgresql]
                               [--minutes 3] [--interval 60] [--events sse|none|mqtt]
                               [--replicas N] [--rollout] [--kill-replica]
                               [--connections 64]
                               [--enroll-minutes 60]

For each database and fleet size: a fresh ``fleetcore server run`` process,
then ``fleetcore simulate`` (its own process) with every device reporting
and polling every ``--interval`` seconds and, with ``--events sse``, its
event stream open. Once every device has enrolled and one interval has
passed (the start-up storm), over a window of ``--minutes``:

- what the devices saw (``devices_saw``, from two readings of the
  simulator's ``--stats-file``): status reports answered per second
  against devices / interval (the server answers a report once its
  transaction has committed, so answered means persisted; a rate below the
  offered one is a growing backlog), polls per second, and the latency of
  their requests from sending to the answer, queueing in front of the
  server included (a percentile is the upper bound of its bucket);
- the server's own latency for status reports and desired-state polls, from
  its request histograms (deltas of two /metrics scrapes; time spent before
  a request reaches the application is not in them);
- the server's CPU share and resident memory, and the simulator's and
  PostgreSQL's CPU shares (all share this machine).

``--events mqtt`` starts a mosquitto broker and gives it to the server and
the simulator as their event channel (the simulator then holds one
subscription for the whole fleet instead of a stream per device).
``--replicas N`` (PostgreSQL only) runs N server processes on one database
behind HAProxy; their latencies, CPU and memory are summed. With
``--kill-replica`` the last replica is killed (SIGKILL) once the database
has the canary step's devices (5%) on the commit: the rollout must still
reach every device, and every device must still be on the books.

With ``--rollout``, a canary rollout (30 s between steps, automatic
promotion) follows the window: the time from its start to the last device
applying the commit (seen in the simulator's stats file, so good to 10 s)
and to the database holding every device's report of it (read directly
every 5 s), what the devices' requests met meanwhile
(``rollout_devices_saw``) and the server's own latency
(``rollout_server``), when the engine promoted each step and completed
(from its decisions), the server's and the simulator's CPU share
meanwhile, and the devices by status and commit in the database at the
end. A rollout still short of the whole
fleet after 900 s is reported with how many devices run the commit.

A fleet still enrolling after ``--enroll-minutes`` is one the server does
not carry: the window is measured anyway, against the devices enrolled by
then (``enrolled_after_s``), and no rollout follows.

Every loop is bounded in time; traffic goes to loopback only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fleetcore.server.store import database_url
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.haproxy import HAProxy
from fleetcore.testing.mosquitto import Mosquitto
from fleetcore.testing.postgres import Postgres
from fleetcore.testing.serverproc import FLEETCORE, ServerProcess

METRIC = "fleetcore_http_request_duration_seconds"
ROUTES = {
    "status": ("POST", "/v1/devices/{device_id}/status"),
    "desired": ("GET", "/v1/devices/{device_id}/desired"),
}


def raise_fd_limit() -> None:
    """Event streams need a socket each, in the server and in the simulator."""
    want = 1 << 20
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def histograms(url: str) -> dict[tuple[str, str], dict[str, float]]:
    """Bucket counts per (method, route), summed over status codes."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=120) as response:
        text = response.read().decode()
    out: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in text.splitlines():
        if not line.startswith(f"{METRIC}_bucket{{"):
            continue
        labels_text, value = line[len(METRIC) + 8 :].rsplit("} ", 1)
        labels = dict(part.split("=", 1) for part in labels_text.split(","))
        key = (labels["method"].strip('"'), labels["route"].strip('"'))
        out[key][labels["le"].strip('"')] += float(value)
    return out


def percentiles(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    bounds = [*sorted((b for b in after if b != "+Inf"), key=float), "+Inf"]
    delta = [after.get(b, 0) - before.get(b, 0) for b in bounds]  # cumulative counts
    total = delta[-1]
    result: dict[str, Any] = {"requests": int(total)}
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        bound = next((b for b, c in zip(bounds, delta, strict=True) if c >= q * total), "+Inf")
        result[f"{name}_ms_at_most"] = None if bound == "+Inf" else float(bound) * 1000
    return result


def sim_stats(path: Path) -> dict[str, Any]:
    """The simulator's summary so far, freshly rewritten (it does so every 10 s)."""
    old = path.stat().st_mtime if path.exists() else 0.0
    wait_until(
        "the simulator's stats", lambda: path.exists() and path.stat().st_mtime > old, 30, 0.2
    )
    stats: dict[str, Any] = json.loads(path.read_text())
    return stats


def devices_saw(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What the simulated devices saw between two summaries: reports answered
    (the server answers once the report is committed) and polls per second,
    and their requests' latency (from sending to the answer, queueing in
    front of the server's application included; a percentile is the upper
    bound of its bucket)."""
    wall = after["duration_seconds"] - before["duration_seconds"]
    # The file's keys are sorted as text: order the bounds as numbers.
    buckets_before, buckets = before["latency_buckets_ms"], after["latency_buckets_ms"]
    bounds = sorted(buckets, key=lambda b: math.inf if b == "+Inf" else float(b))
    counts = [buckets[b] - buckets_before[b] for b in bounds]
    total = counts[-1]
    out: dict[str, Any] = {
        "seconds": round(wall, 1),
        "reports_per_s": round((after["reports"]["sent"] - before["reports"]["sent"]) / wall, 1),
        "report_failures": after["reports"]["failed"] - before["reports"]["failed"],
        "polls_per_s": round((after["polls"] - before["polls"]) / wall, 1),
        "requests": total,
    }
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        bound = next((b for b, c in zip(bounds, counts, strict=True) if c >= q * total), "+Inf")
        out[f"{name}_ms_at_most"] = None if bound == "+Inf" else float(bound)
    return out


def _enrolled(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["enrolled"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_until(what: str, check: Any, timeout: float, every: float = 2.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(every)
    return time.monotonic() - start


class Servers:
    """One server, or replicas behind HAProxy: one address, summed figures."""

    def __init__(self, root: Path, repo: Path, db_url: str | None, replicas: int,
                 extra: tuple[str, ...]) -> None:  # fmt: skip
        self.replicas = [
            ServerProcess(root / f"data{i}", repo, db_url=db_url, extra=extra)
            for i in range(replicas)
        ]
        self.lb: HAProxy | None = None
        self.db = sa.create_engine(database_url(self.replicas[0].data_dir, db_url))
        """The database itself, read directly: what the servers have
        persisted, counted without adding to their load."""
        self.dead_cpu = 0.0
        """CPU seconds of replicas killed during the run."""

    def start(self) -> Servers:
        for replica in self.replicas:
            replica.start()
        if len(self.replicas) > 1:
            self.lb = HAProxy.start([r.port for r in self.replicas])
            if self.lb is None:
                raise SystemExit("HAProxy is not installed")
        return self

    @property
    def url(self) -> str:
        return self.lb.url if self.lb is not None else self.replicas[0].url

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return self.replicas[0].api(method, path, body)

    @property
    def alive(self) -> list[ServerProcess]:
        return [r for r in self.replicas if r.proc is not None]

    def kill_last(self) -> None:
        victim = self.alive[-1]
        self.dead_cpu += victim.cpu_seconds()
        victim.kill()

    def cpu_seconds(self) -> float:
        return self.dead_cpu + sum(r.cpu_seconds() for r in self.alive)

    def rss_mib(self) -> float:
        return sum(r.rss_mib() for r in self.alive)

    def histograms(self) -> dict[tuple[str, str], dict[str, float]]:
        total: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for replica in self.alive:
            for key, buckets in histograms(replica.url).items():
                for bound, count in buckets.items():
                    total[key][bound] += count
        return total

    def persisted(self, column: str) -> dict[str, int]:
        """Devices by ``column`` (commit, status) as the database has them."""
        col: sa.ColumnClause[Any] = sa.column(column)
        query = sa.select(col, sa.func.count()).select_from(sa.table("devices")).group_by(col)
        with self.db.connect() as conn:
            return {str(value): int(n) for value, n in conn.execute(query)}

    def stop(self) -> None:
        self.db.dispose()
        if self.lb is not None:
            self.lb.stop()
        for replica in self.replicas:
            replica.stop()


def bench(
    db: str, db_url: str | None, devices: int, minutes: float, interval: int, events: str,
    rollout: bool, root: Path, replicas: int = 1, connections: int = 64,
    enroll_minutes: float = 60, kill_replica: bool = False, wake_rate: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    repo = FleetRepo.create(root / f"repo-{db}-{devices}")
    v1 = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n"}, "v1")
    broker = None
    if events == "mqtt":
        broker = Mosquitto.start()
        if broker is None:
            raise SystemExit("mosquitto is not installed")
        events = broker.url
    extra: tuple[str, ...] = ("--events", events) if broker is not None else ()
    # Per-device series make each /metrics scrape a pass over the fleet
    # (seconds of CPU at 30,000 devices, in the middle of the window): off
    # beyond that size, as docs/server.md advises for large fleets.
    device_metrics = devices <= 30000
    if not device_metrics:
        extra += ("--no-device-metrics",)
    if wake_rate is not None:
        extra += ("--wake-rate", str(wake_rate))
    server = Servers(root / f"data-{db}-{devices}", repo.path, db_url, replicas, extra).start()
    result: dict[str, Any] = {
        "db": db, "devices": devices, "interval_s": interval, "replicas": replicas,
        "events": "mqtt" if broker is not None else events, "connections": connections,
        "device_metrics": device_metrics, "wake_rate": wake_rate,
    }  # fmt: skip
    sim = None
    try:
        # Everyone on v1 first, so the rollout below moves a settled fleet.
        server.api("POST", "/v1/rollouts", {"commit": v1, "strategy": "percentage", "role": "web",
                                             "steps": [{"options": {"percent": 100}}]})  # fmt: skip
        # Longer than the benchmark can take (it stops the simulator itself):
        # a simulator that ends early leaves a rollout's devices silent.
        duration = enroll_minutes * 60 + 3 * interval + minutes * 60 + (960 if rollout else 0)
        sim_log = root / f"simulate-{db}-{devices}.json"
        stats_file = root / f"simulate-{db}-{devices}.stats.json"
        sim = subprocess.Popen(
            [*FLEETCORE, "--log-level", "ERROR", "simulate", "--server", server.url,
             "--enrollment-token", server.replicas[0].enrollment_token(), "--devices", str(devices),
             "--report-interval", f"{interval}s", "--poll-interval", f"{interval}s",
             "--events", events, "--update-time", "1s", "--duration", f"{duration:.0f}s",
             "--connections", str(connections), "--stats-file", str(stats_file), "--json"],
            stdout=sim_log.open("w"), stderr=subprocess.DEVNULL,
        )  # fmt: skip
        t0 = time.monotonic()
        # Watched through the simulator's stats file: the fleet status is a
        # pass over every device, which a benchmark must not add to the load.
        try:
            result["enroll_s"] = round(
                wait_until(
                    "enrollment", lambda: _enrolled(stats_file) >= devices, enroll_minutes * 60, 5
                ),
                1,
            )
            result["enroll_per_s"] = round(devices / max(result["enroll_s"], 0.001))
        except RuntimeError:
            # A fleet the server cannot carry never finishes enrolling (the
            # enrolled devices' reports take its CPU): measure what it carries.
            result["enroll_s"] = None
            result["enrolled_after_s"] = [enroll_minutes * 60, _enrolled(stats_file)]
            rollout = False
        # The start-up storm settles: devices that enrolled early queued
        # their first requests behind the enrollments still under way.
        time.sleep(interval * (1 if devices <= 30000 else 2))
        seen0 = sim_stats(stats_file)
        cpu0, sim_cpu0, db_cpu0, h0, wall0 = (
            server.cpu_seconds(), _cpu(sim.pid), _database_cpu(), server.histograms(),
            time.monotonic(),
        )  # fmt: skip
        time.sleep(minutes * 60)
        seen1 = sim_stats(stats_file)
        cpu1, sim_cpu1, db_cpu1, h1, wall1 = (
            server.cpu_seconds(), _cpu(sim.pid), _database_cpu(), server.histograms(),
            time.monotonic(),
        )  # fmt: skip
        wall = wall1 - wall0
        for name, key in ROUTES.items():
            stats = percentiles(h0.get(key, {}), h1.get(key, {}))
            stats["per_s"] = round(stats["requests"] / wall, 1)
            result[name] = stats
        result["devices_saw"] = devices_saw(seen0, seen1)
        carried = (seen0["enrolled"] + seen1["enrolled"]) / 2
        result["offered_reports_per_s"] = round(carried / interval, 1)
        result["keeps_up"] = result["devices_saw"]["reports_per_s"] >= 0.95 * carried / interval
        result["server_cpu_percent"] = round(100 * (cpu1 - cpu0) / wall, 1)
        result["simulator_cpu_percent"] = round(100 * (sim_cpu1 - sim_cpu0) / wall, 1)
        if db_url is not None:
            result["database_cpu_percent"] = round(100 * (db_cpu1 - db_cpu0) / wall, 1)
        result["server_rss_mib"] = round(server.rss_mib(), 1)
        result["server_rss_mib_per_10k"] = round(server.rss_mib() * 10000 / carried, 1)
        if rollout:
            v2 = repo.commit({"roles/web/activate.sh": "#!/bin/sh\necho 2\n"}, "v2")
            server.api("POST", "/v1/hooks/git")
            time.sleep(2)
            seen_r0, hr0 = sim_stats(stats_file), server.histograms()
            start = time.monotonic()
            cpu_r0, sim_r0, db_r0 = server.cpu_seconds(), _cpu(sim.pid), _database_cpu()
            created = server.api("POST", "/v1/rollouts", {
                "commit": v2, "strategy": "canary", "wait_seconds": 30, "role": "web",
            })  # fmt: skip

            # Watched in the database (what the servers persisted) and in
            # the simulator's stats file (what the devices applied; rewritten
            # every 10 s): the rollout's progress from the server is a pass
            # over every device per step reached, seconds of its CPU at
            # 30,000 devices, which a benchmark must not add.
            def applied() -> int:
                try:
                    return int(json.loads(stats_file.read_text())["commits"].get(v2, 0))
                except (OSError, ValueError, KeyError):
                    return 0

            def done() -> bool:
                if "rollout_all_applied_s" not in result and applied() >= devices:
                    result["rollout_all_applied_s"] = round(time.monotonic() - start, 1)
                reported = server.persisted("commit").get(v2, 0)
                # One replica dies once the canary step's devices run the commit.
                canary_done = reported >= devices // 20
                if kill_replica and canary_done and "replica_killed_at_s" not in result:
                    server.kill_last()
                    result["replica_killed_at_s"] = round(time.monotonic() - start, 1)
                return reported >= devices

            try:
                result["rollout_all_reported_s"] = round(wait_until("the rollout", done, 900, 5), 1)
            except RuntimeError:  # a fleet the server cannot carry: say how far it got
                result["rollout_all_reported_s"] = None
                result["rollout_reported_after_900_s"] = server.persisted("commit").get(v2, 0)
                result["rollout_applied_after_900_s"] = applied()
            # (None: the stats file, rewritten every 10 s, had not caught up.)
            result.setdefault("rollout_all_applied_s", None)
            # What the devices' requests met while the rollout moved them.
            result["rollout_devices_saw"] = devices_saw(seen_r0, sim_stats(stats_file))
            if not kill_replica:  # (a killed replica's counts are gone)
                hr1 = server.histograms()
                result["rollout_server"] = {
                    name: percentiles(hr0.get(key, {}), hr1.get(key, {}))
                    for name, key in ROUTES.items()
                }
            # When the engine promoted each step (and completed), from its decisions.
            ro = server.api("GET", f"/v1/rollouts/{created['id']}")
            began = _stamp(ro["created_at"])
            result["rollout_decisions_s"] = [
                [d["action"], d["step"], round(_stamp(d["at"]) - began, 1)]
                for d in ro["decisions"]
                if d["action"] in ("promote", "complete")
            ]
            took = (time.monotonic() - start) / 100
            result["rollout_server_cpu_percent"] = round((server.cpu_seconds() - cpu_r0) / took, 1)
            result["rollout_simulator_cpu_percent"] = round((_cpu(sim.pid) - sim_r0) / took, 1)
            if db_url is not None:
                result["rollout_database_cpu_percent"] = round((_database_cpu() - db_r0) / took, 1)
            result["rollout_state"] = ro["state"]
            # Every device still on the books, and how the servers see each.
            result["devices_after"] = {
                "by_status": server.persisted("status"),
                "by_commit": {c[:12]: n for c, n in server.persisted("commit").items()},
            }
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
    finally:
        if sim is not None:
            sim.terminate()
            try:
                sim.wait(120)
            except subprocess.TimeoutExpired:
                sim.kill()
        server.stop()
        if broker is not None:
            broker.stop()
    try:
        summary = json.loads(sim_log.read_text())
        keep = ("enrolled", "reports", "errors", "latency_ms")
        result["simulator"] = {k: summary[k] for k in keep}
    except (ValueError, OSError):
        pass
    return result


def _stamp(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _database_cpu() -> float:
    """CPU seconds of every PostgreSQL on the machine: its live processes,
    and through the postmaster's children counters those that ended. The
    database's share is not in the servers'. Run the benchmark where its
    own PostgreSQL is the only one, or the figure includes the others."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        ticks = int(fields[11]) + int(fields[12])
        parent = Path(f"/proc/{fields[1]}/comm")
        if not (parent.exists() and parent.read_text().strip() == "postgres"):
            ticks += int(fields[13]) + int(fields[14])  # the postmaster: ended children
        total += ticks / os.sysconf("SC_CLK_TCK")
    return total


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="10000")
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--events", default="sse")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--rollout", action="store_true")
    parser.add_argument(
        "--kill-replica",
        action="store_true",
        help="with --replicas and --rollout: kill one replica once the canary step is done",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="the simulator's connections for requests (streams are extra)",
    )
    parser.add_argument(
        "--enroll-minutes",
        type=float,
        default=60,
        help="measure what the server carries if the fleet has not enrolled by then",
    )
    parser.add_argument(
        "--wake-rate",
        type=int,
        default=None,
        help="the servers' --wake-rate (devices told a second; default: the server's)",
    )
    args = parser.parse_args()
    # Stopped from outside, it still stops its servers, broker and database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    raise_fd_limit()
    results = []
    with tempfile.TemporaryDirectory(prefix="fleetcore-fleet-") as tmp:
        root = Path(tmp)
        pg = None
        try:
            for db in args.db.split(","):
                for n in (int(x) for x in args.devices.split(",")):
                    url = None
                    if db == "postgresql":
                        pg = pg or Postgres.start()
                        if pg is None:
                            raise SystemExit("PostgreSQL is not installed")
                        url = pg.create_database(f"fleet{n}")
                    if args.replicas > 1 and db != "postgresql":
                        raise SystemExit("--replicas needs --db postgresql")
                    r = bench(db, url, n, args.minutes, args.interval, args.events,
                              args.rollout, root, args.replicas, args.connections,
                              args.enroll_minutes, args.kill_replica,
                              args.wake_rate)  # fmt: skip
                    print(json.dumps(r), flush=True)
                    results.append(r)
        finally:
            if pg is not None:
                pg.stop()
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
