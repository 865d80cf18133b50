"""The run: devices started, counted, watched, stopped, summed up."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import resource
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

from attrs import define, field

from fleetcore.files import atomic_write_json
from fleetcore.plugin.manager import PluginManager
from fleetcore.rollout.select import RolloutStrategies
from fleetcore.simulate.credentials import CredentialFile
from fleetcore.simulate.device import VirtualDevice
from fleetcore.simulate.plan import Plan, devices
from fleetcore.simulate.presence import come_and_go, listen_sse, woken_by_channel
from fleetcore.simulate.wire import LATENCY_BOUNDS_MS, Endpoint, Pool

log = logging.getLogger("fleetcore.simulate")

PROGRESS_EVERY = 10.0
CONVERGED_CHECK_EVERY = 1.0


@define
class Stats:
    enrolled: int = 0
    reports_sent: int = 0
    reports_failed: int = 0
    polls: int = 0
    events_received: int = 0
    updates_success: int = 0
    updates_failed: int = 0
    updates_rolled_back: int = 0
    errors: collections.Counter[str] = field(factory=collections.Counter)


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted)) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Simulation:
    """Shared by every virtual device: the plan, the connection pool, the counters."""

    def __init__(
        self,
        plan: Plan,
        *,
        server: str,
        enrollment_token: str,
        events: str = "sse",
        pm: PluginManager | None = None,
        connections: int = 64,
        ca_file: str | None = None,
        stats_file: Path | None = None,
        credentials: CredentialFile | None = None,
    ) -> None:
        self.plan = plan
        self.server = server
        self.enrollment_token = enrollment_token
        self.events = events
        self.pm = pm or PluginManager()
        self.strategies = RolloutStrategies(self.pm)
        self.endpoint = Endpoint(server, ca_file=ca_file)
        self.connections = connections
        self.stats_file = stats_file
        """Where the summary so far is rewritten every 10 s (``--stats-file``)."""
        self.credentials = credentials or CredentialFile(None, server)
        """The devices' credentials, kept between runs with ``--credentials``."""
        self.stats = Stats()
        self.devices: list[VirtualDevice] = []
        self.converged = False
        self.interrupted = False
        self._channel: Any = None
        self._subscribers: list[Any] = []
        self._by_id: dict[str, VirtualDevice] = {}

    # -- what devices use ---------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """A sleep that ends early when the run stops."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    def count_error(self, reason: str, detail: object = None) -> None:
        self.stats.errors[reason] += 1
        if detail is not None:
            log.debug("%s: %s", reason, detail)

    def listen(self, device: VirtualDevice) -> Coroutine[Any, Any, None] | None:
        if self.events == "sse":
            return listen_sse(device)
        if self._channel is not None and self._channel[0].fleet_subscriber is None:
            # The channel has no way to listen for many devices at once: one
            # subscriber per device, as each agent would run.
            loop = asyncio.get_running_loop()
            record, options = self._channel

            def wake(name: str, device: VirtualDevice = device) -> None:
                loop.call_soon_threadsafe(woken_by_channel, device, name)

            subscriber = record.subscriber(options, device.spec.device_id, wake)
            subscriber.start()
            self._subscribers.append(subscriber)
        return None

    def _listen_for_everyone(self, factory: Any, options: Any) -> None:
        """One subscription for the whole simulated fleet (the channel's
        ``fleet_subscriber``): events are handed to their device in the loop."""
        loop = asyncio.get_running_loop()
        by_id: dict[str, VirtualDevice] = {}

        def deliver(device_id: str, name: str) -> None:
            device = by_id.get(device_id)
            if device is not None:
                woken_by_channel(device, name)

        def wake(device_id: str, name: str) -> None:
            loop.call_soon_threadsafe(deliver, device_id, name)

        self._by_id = by_id
        subscriber = factory(options, wake)
        subscriber.start()
        self._subscribers.append(subscriber)

    def presence(self, device: VirtualDevice) -> Coroutine[Any, Any, None] | None:
        return come_and_go(device) if device.spec.behaviour != "online" else None

    # -- the run -------------------------------------------------------------------------

    async def run(self, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        self.stopping = asyncio.Event()
        self.pool = Pool(self.endpoint, self.connections)
        # Enrollments take at most half the connections: a fleet of 100,000
        # enrolling at once would otherwise queue every enrolled device's
        # first report behind every enrollment still to come.
        self.enrolling = asyncio.Semaphore(max(1, self.connections // 2))
        if self.events not in ("sse", "none"):
            from fleetcore.channels.select import server_channels

            selected = server_channels(self.pm, [self.events])[0]
            self._channel = (selected.record, selected.options)
            if selected.record.fleet_subscriber is not None:
                self._listen_for_everyone(selected.record.fleet_subscriber, selected.options)
        streams = self.plan.devices if self.events == "sse" else 0
        _raise_fd_limit(streams + self.connections + 1024)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._interrupt)
        cpu_start = time.process_time()
        start = time.monotonic()
        self.devices = [VirtualDevice(spec, self) for spec in devices(self.plan)]
        self._by_id.update((d.spec.device_id, d) for d in self.devices)
        tasks = [asyncio.create_task(d.live()) for d in self.devices]
        watcher = asyncio.create_task(self._watch(start, progress))
        stop_waiter = asyncio.create_task(self.stopping.wait())
        everyone_gone = asyncio.create_task(asyncio.wait(tasks))
        try:
            # Devices that could not enroll end their task: with nobody left, stop.
            await asyncio.wait({stop_waiter, everyone_gone}, return_when=asyncio.FIRST_COMPLETED)
            self.stopping.set()
        finally:
            stop_waiter.cancel()
            everyone_gone.cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            watcher.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, watcher, return_exceptions=True)
            for subscriber in self._subscribers:
                try:
                    subscriber.close()
                except Exception as exc:
                    self.count_error("events: channel close failed", exc)
            self.pool.close()
            self.save_credentials()
        wall = time.monotonic() - start
        return self.summary(wall, time.process_time() - cpu_start)

    def save_credentials(self) -> None:
        """Keep the credentials of devices enrolled since the last save:
        every 10 s and at the end, so a run killed mid-enrollment loses at
        most 10 s of them (those devices are refused by the next run)."""
        try:
            self.credentials.save()
        except OSError as exc:
            self.count_error("credentials file: not written", exc)

    def _interrupt(self) -> None:
        self.interrupted = True
        self.stopping.set()

    async def _watch(self, start: float, progress: Callable[[str], None] | None) -> None:
        plan = self.plan
        next_progress = start + PROGRESS_EVERY
        cpu_start = time.process_time()
        while not self.stopping.is_set():
            await asyncio.sleep(CONVERGED_CHECK_EVERY)
            now = time.monotonic()
            if plan.until_converged and self.is_converged():
                self.converged = True
                self.stopping.set()
            elif plan.duration is not None and now - start >= plan.duration:
                self.converged = self.is_converged()
                self.stopping.set()
            if now >= next_progress:
                next_progress += PROGRESS_EVERY
                if progress is not None:
                    progress(self.progress_line(now - start))
                self.save_credentials()
                if self.stats_file is not None:
                    summary = self.summary(now - start, time.process_time() - cpu_start)
                    try:
                        atomic_write_json(self.stats_file, summary)
                    except OSError as exc:  # a full disk must not end the run's clock
                        self.count_error("stats file: not written", exc)

    def is_converged(self) -> bool:
        """Every online device settled on a release, none waiting for a rollout
        under way to reach it, and
        the devices that follow the fleet agree on one commit (those refusing
        a failed commit, and those locked or overridden, aside)."""
        fleet_commits: set[str | None] = set()
        for device in self.devices:
            if not device.active:
                continue
            if device.credential is None or not device.settled:
                return False
            if device.commit is None and not device.failed_commits:
                return False  # nothing to run yet is not converged, only idle
            desired = device.desired
            if desired.get("rollout") and desired.get("why") != "rollout":
                # A rollout under way may still reach this device. One that
                # has reached it is done with it: the server does not wake a
                # device to say that its rollout finished on the same commit.
                return False
            if desired.get("why") in ("rollout", "stable", "pin") and (
                desired.get("commit") == device.commit
            ):
                fleet_commits.add(device.commit)
        return len(fleet_commits) <= 1

    def progress_line(self, elapsed: float) -> str:
        s = self.stats
        commits = collections.Counter(d.commit[:12] if d.commit else "-" for d in self.devices)
        top = ", ".join(f"{c} {n}" for c, n in commits.most_common(3))
        return (
            f"[{elapsed:6.0f}s] enrolled {s.enrolled}/{self.plan.devices}  reports {s.reports_sent}"
            f"  polls {s.polls}  events {s.events_received}  updates {s.updates_success} ok"
            f" {s.updates_failed} failed  commits: {top}  errors {sum(s.errors.values())}"
        )

    def _buckets(self) -> dict[str, int]:
        names = [f"{bound:g}" for bound in LATENCY_BOUNDS_MS] + ["+Inf"]
        counts = itertools.accumulate(self.pool.buckets)
        return dict(zip(names, counts, strict=True))

    def summary(self, wall: float, cpu: float) -> dict[str, Any]:
        s = self.stats
        pool = self.pool
        latencies = sorted(pool.latencies)

        def pct(q: float) -> float | None:
            if not latencies:
                return None
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

        commits = collections.Counter(d.commit for d in self.devices if d.commit)
        return {
            "devices": self.plan.devices,
            "enrolled": s.enrolled,
            "reports": {"sent": s.reports_sent, "failed": s.reports_failed},
            "polls": s.polls,
            "events_received": s.events_received,
            "updates": {
                "success": s.updates_success,
                "failed": s.updates_failed,
                "rolled_back": s.updates_rolled_back,
            },
            "commits": dict(commits.most_common()),
            "latency_ms": {
                "p50": pct(0.50),
                "p95": pct(0.95),
                "p99": pct(0.99),
                "max": round(pool.max_seconds * 1000, 2) if latencies else None,
                "mean": round(pool.total_seconds / pool.requests * 1000, 2) if latencies else None,
                "requests": pool.requests,
            },
            # Cumulative, like a Prometheus histogram: the requests that took
            # at most each bound, so two summaries give a window's percentiles.
            "latency_buckets_ms": self._buckets(),
            "errors": dict(s.errors.most_common()),
            "converged": self.converged,
            "interrupted": self.interrupted,
            "duration_seconds": round(wall, 2),
            "simulator_cpu_seconds": round(cpu, 2),
            "simulator_cpu_percent": round(100 * cpu / wall, 1) if wall > 0 else None,
        }


def render(summary: dict[str, Any], out: TextIO = sys.stdout) -> None:
    """The summary for a person."""
    lat = summary["latency_ms"]
    upd = summary["updates"]
    reports = summary["reports"]
    lines = [
        f"devices          {summary['devices']} ({summary['enrolled']} enrolled)",
        f"reports          {reports['sent']} sent, {reports['failed']} failed",
        f"polls            {summary['polls']}",
        f"events received  {summary['events_received']}",
        f"updates          {upd['success']} succeeded, {upd['failed']} failed"
        f" ({upd['rolled_back']} rolled back)",
        f"latency (ms)     p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}  max {lat['max']}"
        f"  over {lat['requests']} requests",
        f"duration         {summary['duration_seconds']} s"
        f" ({'converged' if summary['converged'] else 'not converged'}"
        f"{', interrupted' if summary['interrupted'] else ''})",
        f"simulator CPU    {summary['simulator_cpu_seconds']} s"
        f" ({summary['simulator_cpu_percent']}% of one core)",
        "commits:",
        *(f"  {commit[:12]}  {count}" for commit, count in summary["commits"].items()),
    ]
    if summary["errors"]:
        lines.append("errors:")
        lines += [f"  {count:>7}  {reason}" for reason, count in summary["errors"].items()]
    out.write("\n".join(lines) + "\n")
