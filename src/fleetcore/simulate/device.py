"""One virtual device: what a real agent in managed mode says to the server.

It keeps only what the server could tell apart: its commit, its status and
error, its history, its ETag. Applying a release is a wait of
``update_time``; a device that a ``--fail`` rule selects fails health on that
commit, rolls back (it stays on its commit) and reports ``failed`` with
:data:`~fleetcore.simulate.plan.SIMULATED_FAILURE`, as a real agent would
after a rollback. Like a real agent it does not try the same commit again
(until the server says ``resume``), and three failures in a row put it in
safe mode.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from fleetcore import __version__
from fleetcore.plugin.types import DeviceInfo
from fleetcore.rollout.select import RolloutStrategies
from fleetcore.simulate.credentials import CredentialFile
from fleetcore.simulate.plan import SIMULATED_FAILURE, DeviceSpec, Plan, fails
from fleetcore.simulate.wire import Endpoint, Pool, WireError

log = logging.getLogger("fleetcore.simulate")

SAFE_MODE_AFTER = 3
"""Failed updates in a row that put a device in safe mode (as the agent's default)."""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Counters(Protocol):
    enrolled: int
    reports_sent: int
    reports_failed: int
    polls: int
    events_received: int
    updates_success: int
    updates_failed: int
    updates_rolled_back: int


class Fleet(Protocol):
    """What a virtual device uses of the run it belongs to."""

    plan: Plan
    enrollment_token: str
    endpoint: Endpoint
    pool: Pool
    enrolling: asyncio.Semaphore
    strategies: RolloutStrategies
    stopping: asyncio.Event
    credentials: CredentialFile

    @property
    def stats(self) -> Counters: ...

    async def sleep(self, seconds: float) -> None: ...

    def count_error(self, reason: str, detail: object = None) -> None: ...

    def listen(self, device: VirtualDevice) -> Coroutine[Any, Any, None] | None:
        """How the device hears the server's events (None: it does not)."""

    def presence(self, device: VirtualDevice) -> Coroutine[Any, Any, None] | None:
        """When the device goes silent (None: it stays online)."""


class VirtualDevice:
    def __init__(self, spec: DeviceSpec, sim: Fleet) -> None:
        self.spec = spec
        self.sim = sim
        self.info = DeviceInfo(device_id=spec.device_id, role=spec.role, segment=spec.segment)
        # Jitter and synthetic readings, repeatable per device: not for secrets.
        self.rng = random.Random(f"{sim.plan.seed}:{spec.device_id}")  # noqa: S311
        self.credential: str | None = None
        self.commit: str | None = None
        self.status = "unknown"
        self.error: str | None = None
        self.mode = "normal"
        self.failures_in_a_row = 0
        self.failed_commits: set[str] = set()
        self.resume_seen = 0
        self.etag: str | None = None
        self.desired: dict[str, Any] = {}
        self.desired_seen = False
        self.updating = False
        self.last_update: str | None = None
        self.last_result: str | None = None
        self.history: list[dict[str, Any]] = []
        self.wake = asyncio.Event()
        self.silent = False
        self.telling = False
        """An update's history and status report are on their way."""
        self.started = time.monotonic()
        self.path = f"/v1/devices/{spec.device_id}"

    # -- what the run asks of a device -------------------------------------------------

    @property
    def settled(self) -> bool:
        """On the commit it should run (or refusing it), nothing under way."""
        if self.updating or self.telling or not self.desired_seen:
            return False
        want = self.desired.get("commit")
        return (
            want is None
            or want == self.commit
            or want in self.failed_commits
            or self.mode == "safe_mode"
        )

    @property
    def active(self) -> bool:
        return self.spec.behaviour == "online"

    # -- its life --------------------------------------------------------------------

    async def live(self) -> None:
        if not await self._enroll():
            return
        tasks = [asyncio.create_task(self._converse())]
        presence = self.sim.presence(self)
        if presence is not None:
            tasks.append(asyncio.create_task(presence))
        listener = self.sim.listen(self)
        if listener is not None:
            tasks.append(asyncio.create_task(listener))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _enroll(self) -> bool:
        self.credential = self.sim.credentials.get(self.spec.device_id)
        if self.credential is not None:  # enrolled by an earlier run (--credentials)
            self.sim.stats.enrolled += 1
            return True
        body: dict[str, Any] = {
            "enrollment_token": self.sim.enrollment_token,
            "device_id": self.spec.device_id,
            "role": self.spec.role,
            "segment": self.spec.segment,
            "hostname": self.spec.device_id,
        }
        if self.spec.labels:
            body["labels"] = self.spec.labels
        for attempt in range(5):
            if self.sim.stopping.is_set():
                return False
            try:
                async with self.sim.enrolling:
                    answer = await self.sim.pool.request("POST", "/v1/enroll", body=body)
            except WireError as exc:
                self.sim.count_error("enroll: unreachable", exc)
                await self.sim.sleep(min(30.0, 2.0**attempt))
                continue
            if 200 <= answer.status < 300:
                self.credential = str(answer.json()["credential"])
                self.sim.stats.enrolled += 1
                self.sim.credentials.add(self.spec.device_id, self.credential)
                return True
            self.sim.count_error(f"enroll: HTTP {answer.status}", answer.body)
            if answer.status < 500:
                return False
            await self.sim.sleep(min(30.0, 2.0**attempt))
        return False

    async def _converse(self) -> None:
        plan = self.sim.plan
        loop_time = time.monotonic
        # Spread the fleet's first requests over a little while, then keep
        # each device's own rhythm.
        next_poll = loop_time() + self.rng.uniform(0, min(plan.poll_interval, 2.0))
        next_report = next_poll + self.rng.uniform(0, min(plan.report_interval, 2.0))
        while not self.sim.stopping.is_set():
            if self.silent:
                await self.sim.sleep(1.0)
                continue
            timeout = max(0.0, min(next_poll, next_report) - loop_time())
            woken = await self._wait_for_wake(timeout)
            if self.sim.stopping.is_set() or self.silent:
                continue
            now = loop_time()
            if woken or now >= next_poll:
                await self.poll(fresh=woken)
                next_poll = loop_time() + plan.poll_interval
            if loop_time() >= next_report:
                await self.report()
                next_report = loop_time() + plan.report_interval

    async def _wait_for_wake(self, timeout: float) -> bool:
        if self.wake.is_set():
            self.wake.clear()
            return True
        try:
            await asyncio.wait_for(self.wake.wait(), timeout)
        except TimeoutError:
            return False
        self.wake.clear()
        return True

    # -- the protocol ------------------------------------------------------------------

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.credential}"}

    async def poll(self, *, fresh: bool = False) -> None:
        headers = self.auth()
        if self.etag and not fresh:
            headers["If-None-Match"] = self.etag
        try:
            answer = await self.sim.pool.request("GET", f"{self.path}/desired", headers=headers)
        except WireError as exc:
            self.sim.count_error("poll: unreachable", exc)
            return
        self.sim.stats.polls += 1
        if answer.status == 200:
            self.desired = answer.json() or {}
            self.etag = answer.headers.get("etag")
            self.desired_seen = True
        elif answer.status != 304:
            self.sim.count_error(f"poll: HTTP {answer.status}", answer.body)
            return
        await self._converge()

    async def _converge(self) -> None:
        desired = self.desired
        resume = int(desired.get("resume") or 0)
        if resume > self.resume_seen:
            if self.resume_seen or self.mode == "safe_mode":
                self.mode = "normal"
                self.failures_in_a_row = 0
                self.failed_commits.clear()
                self.status = "healthy" if self.commit else "unknown"
                self.error = None
            self.resume_seen = resume
        commit = desired.get("commit")
        if (
            not commit
            or commit == self.commit
            or commit in self.failed_commits
            or self.mode == "safe_mode"
            or self.updating
            or desired.get("why") == "maintenance"
        ):
            return
        if desired.get("why") == "rollout" and not self._eligible(commit, desired.get("rollout")):
            return
        await self.apply(commit)

    def _eligible(self, commit: str, rollout: dict[str, Any] | None) -> bool:
        """The agent's double-check: the same strategy plugin must agree."""
        if not rollout or not rollout.get("strategy"):
            return True
        name = rollout["strategy"]
        if name not in self.sim.strategies:
            self.sim.count_error(f"double-check: strategy {name} not installed")
            return True
        strategy = self.sim.strategies.get(
            name, rollout.get("options") or {}, "rollout", source="the server's desired state"
        )
        if strategy.eligible(self.info, commit):
            return True
        self.sim.count_error("double-check: not eligible")
        return False

    async def apply(self, commit: str) -> None:
        self.updating = True
        self.status = "updating"
        started = time.monotonic()
        from_commit = self.commit
        try:
            await self.sim.sleep(self.sim.plan.update_time)
            stats = self.sim.stats
            if fails(self.sim.plan, self.spec, commit):
                self.failed_commits.add(commit)
                self.failures_in_a_row += 1
                self.error = SIMULATED_FAILURE
                self.last_result = "rollback"
                stats.updates_failed += 1
                stats.updates_rolled_back += 1
                if self.failures_in_a_row >= SAFE_MODE_AFTER:
                    self.mode = "safe_mode"
                    self.status = "safe_mode"
                else:
                    self.status = "failed"
                result, reason = "rollback", SIMULATED_FAILURE
            else:
                self.commit = commit
                self.failures_in_a_row = 0
                self.error = None
                self.status = "healthy"
                self.last_result = "success"
                stats.updates_success += 1
                result, reason = "success", ""
            self.last_update = now_iso()
            self.history.append(
                {
                    "timestamp": self.last_update,
                    "result": result,
                    "from_commit": from_commit,
                    "to_commit": commit,
                    "reason": reason,
                    "duration_seconds": round(time.monotonic() - started, 3),
                }
            )
        finally:
            self.updating = False
        # Like the agent: report and send history at the end of the cycle.
        # Until they are answered the update is not over: a run that stopped
        # here would leave the server with the device's previous state.
        self.telling = True
        try:
            await self.send_history()
            await self.report()
        finally:
            self.telling = False

    async def send_history(self) -> None:
        if not self.history:
            return
        entries, self.history = self.history, []
        try:
            answer = await self.sim.pool.request(
                "POST", f"{self.path}/history", headers=self.auth(), body={"entries": entries}
            )
        except WireError as exc:
            self.history = entries + self.history
            self.sim.count_error("history: unreachable", exc)
            return
        if answer.status >= 300:
            self.sim.count_error(f"history: HTTP {answer.status}", answer.body)
            if answer.status >= 500:
                self.history = entries + self.history

    async def report(self) -> None:
        stats = self.sim.stats
        try:
            answer = await self.sim.pool.request(
                "POST", f"{self.path}/status", headers=self.auth(), body=status_report(self)
            )
        except WireError as exc:
            stats.reports_failed += 1
            self.sim.count_error("report: unreachable", exc)
            return
        if answer.status >= 300:
            stats.reports_failed += 1
            self.sim.count_error(f"report: HTTP {answer.status}", answer.body)
        else:
            stats.reports_sent += 1


def status_report(device: VirtualDevice) -> dict[str, Any]:
    """What a virtual device reports: its state, and resource figures drawn
    from its own random stream (repeatable with ``--seed``)."""
    rng = device.rng
    report: dict[str, Any] = {
        "status": device.status,
        "hostname": device.spec.device_id,
        "role": device.spec.role,
        "commit": device.commit,
        "agent_version": f"{__version__}+simulated",
        "uptime_seconds": round(time.monotonic() - device.started, 1),
        "last_update": device.last_update,
        "last_update_result": device.last_result,
        "current_error": device.error,
        "cpu_percent": round(rng.uniform(2, 40), 1),
        "memory_percent": round(rng.uniform(20, 70), 1),
        "disk_percent": round(rng.uniform(10, 80), 1),
        "network_kbps": round(rng.uniform(1, 3000), 1),
        "network_receive_bytes_per_second": round(rng.uniform(100, 300_000), 1),
        "network_transmit_bytes_per_second": round(rng.uniform(100, 100_000), 1),
        "mode": device.mode,
    }
    if device.spec.labels:
        report["labels"] = device.spec.labels
    return report
