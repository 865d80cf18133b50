"""Managed mode through a broken network: a real server, real agents, and
the fault proxy of fleetcore.testing between them (cut transfers, resets, a
black hole, a slow-loris answer, a dying event stream)."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.testing.disks import free_bytes, small_disk
from fleetcore.testing.faultproxy import Fault, FaultProxy
from fleetcore.testing.gitrepo import FleetRepo, script_role
from fleetcore.testing.serverproc import ServerProcess

FLEETCORE = [sys.executable, "-m", "fleetcore"]
# Incompressible and bigger than one read: an archive that can be cut midway.
BIG = {"roles/web/data/blob.txt": secrets.token_hex(200_000)}

AGENT = """\
device_id = "{device_id}"
role = "web"
segment = "general"
state_dir = "{state}"
update_interval = "{interval}"

[server]
url = "{url}"
report_interval = "1s"
timeout = "{timeout}"

[throttle]
min_interval = "0s"
failure_pause = "0s"
max_per_hour = 1000

[retry]
attempts = 1
backoff = "10ms"

[disk]
reserve = "1M"
"""


class Server(ServerProcess):
    def __init__(self, root: Path, repo: FleetRepo) -> None:
        super().__init__(root / "server-data", repo.path)
        self.fleet = repo

    def token(self, *args: str) -> str:
        return self.cli(*args).splitlines()[-1].strip()

    def roll_out(self, commit: str) -> None:
        self.api(
            "POST",
            "/v1/rollouts",
            {"commit": commit, "strategy": "percentage",
             "steps": [{"options": {"percent": 100}, "wait_seconds": 0}]},
        )  # fmt: skip

    def history(self, device_id: str) -> list[dict]:
        return list(self.api("GET", f"/v1/devices/{device_id}")["history"])

    def admin_token(self) -> str:
        if self._admin is None:
            self._admin = self.token("token", "create", "--role", "admin")
        return self._admin


class Device:
    """An agent that reaches the server through ``proxy``."""

    def __init__(
        self, tmp: Path, server: Server, proxy: FaultProxy, device_id: str, **opts: str
    ) -> None:
        self.root = tmp / device_id
        self.root.mkdir()
        self.out = self.root / "running.txt"
        self.config = self.root / "agent.toml"
        values = {"interval": "1h", "timeout": "15s", "state": str(self.root / "state"), **opts}
        self.config.write_text(AGENT.format(device_id=device_id, url=proxy.url, **values))
        self.env = {**os.environ, "FLEETCORE_TEST_OUT": str(self.out)}
        token = server.token("enrollment-token")
        assert self.agent("enroll", "--enrollment-token", token).returncode == 0

    def agent(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FLEETCORE, "agent", args[0], "--config", str(self.config), *args[1:]],
            capture_output=True,
            text=True,
            env=self.env,
        )

    def once(self) -> int:
        return self.agent("once").returncode

    def running(self) -> str | None:
        try:
            words = self.out.read_text().split()
        except FileNotFoundError:
            return None
        return words[1] if len(words) > 1 else None


@pytest.fixture
def server(tmp_path: Path, fleet_repo: FleetRepo) -> Iterator[Server]:
    fleet_repo.commit(script_role("v1", extra=BIG), "v1")
    with Server(tmp_path, fleet_repo) as control:
        yield control


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", server.port)) as p:
        yield p


def test_a_cut_download_is_resumed_and_verified_never_cached_whole(server, proxy, tmp_path):
    device = Device(tmp_path, server, proxy, "pi-cut")
    v1 = server.fleet.head()
    server.roll_out(v1)
    proxy.fault = Fault.cut(after=150_000, times=1, match=b"/v1/archives/")
    assert device.once() != 0  # cut mid-archive: the update does not happen...
    assert device.running() is None
    cache = device.root / "state" / "cache" / "server"
    assert not list(cache.glob("*.tar")), "a cut download was kept as a whole archive"
    assert [p.stat().st_size for p in cache.glob("*.tar.partial")] != []
    assert device.once() == 0  # ...and the next cycle fetches the rest
    assert device.running() == v1
    resumed = [r for r in proxy.seen(b"/v1/archives/") if b"Range: bytes=" in r.head]
    assert resumed, "the second download started from zero instead of resuming"


def test_a_release_bigger_than_the_disk_is_skipped_before_downloading(server, proxy, tmp_path):
    with small_disk(tmp_path / "disk", 8 << 20) as disk:
        device = Device(tmp_path, server, proxy, "pi-full", state=str(disk / "state"))
        server.roll_out(server.fleet.head())
        assert device.once() == 0
        before = free_bytes(disk)
        huge = {"roles/web/data/huge.txt": secrets.token_hex(3 << 20)}  # 6 MiB
        server.roll_out(server.fleet.commit(script_role("v2", extra=huge), "huge"))
        out = device.agent("once")
        # The manifest says 6 MiB; download and unpack need twice that.
        assert "disk full: the archive of web@" in out.stdout + out.stderr, out.stdout
        assert not proxy.seen(b"/v1/archives/" + server.fleet.head().encode())
        assert free_bytes(disk) >= before - 64 * 1024
        assert device.running() != server.fleet.head()


def test_a_black_holed_server_does_not_hang_a_cycle(server, proxy, tmp_path):
    device = Device(tmp_path, server, proxy, "pi-hole", timeout="2s")
    server.roll_out(server.fleet.head())
    assert device.once() == 0
    proxy.fault = Fault.blackhole()
    started = time.monotonic()
    assert device.once() == 5  # unreachable, and it says so...
    # ...after its timeout, not never: generous for a loaded machine.
    assert time.monotonic() - started < 45


def test_a_slow_loris_answer_cannot_pin_the_agent(server, proxy, tmp_path):
    device = Device(tmp_path, server, proxy, "pi-slow", timeout="2s")
    server.roll_out(server.fleet.head())
    assert device.once() == 0
    # One byte a second: every read gets a byte before its 2 s timeout.
    proxy.fault = Fault.slow(1.0)
    started = time.monotonic()
    assert device.once() == 5
    assert time.monotonic() - started < 60


def test_history_queued_while_unreachable_arrives_once_each(server, proxy, tmp_path):
    device = Device(tmp_path, server, proxy, "pi-queue")
    server.roll_out(server.fleet.head())
    assert device.once() == 0
    assert [h["result"] for h in server.history("pi-queue")] == ["success"]
    # A release that fails its health check, tried while history uploads are
    # reset: three rollbacks (then safe mode), all kept on the device.
    bad = server.fleet.commit(script_role("v2", health="exit 1", extra=BIG), "bad")
    server.roll_out(bad)
    proxy.fault = Fault.reset(match=b"/history")
    for _ in range(3):
        device.once()
    assert [h["result"] for h in server.history("pi-queue")] == ["success"]
    # Uploads reach the server but their answers are cut: the agent cannot
    # know they arrived, so it sends the same entries again next time.
    proxy.fault = Fault.cut(after=0, match=b"/history")
    device.once()
    assert len(proxy.seen(b"/history")) >= 4
    proxy.fault = Fault.none()
    device.once()
    device.once()
    results = [h["result"] for h in server.history("pi-queue")]
    assert sorted(results) == ["rollback", "rollback", "rollback", "success"], results
    local = [
        json.loads(line)
        for line in (device.root / "state" / "history.jsonl").read_text().splitlines()
    ]
    assert len([e for e in local if e["event"] == "update"]) == 4  # none lost, none twice


def test_a_repair_that_needs_the_server_waits_for_it_without_safe_mode(server, proxy, tmp_path):
    device = Device(tmp_path, server, proxy, "pi-fix")
    server.roll_out(server.fleet.head())
    assert device.once() == 0
    conf = device.root / "state" / "current" / "config" / "app.conf"
    conf.write_text("marker=tampered\n")
    for archive in (device.root / "state" / "cache" / "server").glob("*.tar"):
        archive.unlink()  # restoring the file needs a fresh copy from the server
    proxy.fault = Fault.reset()
    out = device.agent("check", "--fix")
    assert "restore-files unavailable" in out.stderr, out.stderr
    status = json.loads(device.agent("status", "--json").stdout)
    assert status["mode"] == "normal" and status["status"] == "degraded"
    proxy.fault = Fault.none()
    out = device.agent("check", "--fix")
    assert out.returncode == 6, out.stderr  # found and fixed
    assert conf.read_text() == "marker=v1\n"


def test_a_dead_event_stream_is_reconnected_with_back_off(server, proxy, tmp_path):
    device = Device(tmp_path, server, proxy, "pi-sse")
    v1 = server.fleet.head()
    server.roll_out(v1)
    log = device.root / "agent.log"
    agent = subprocess.Popen(
        [*FLEETCORE, "agent", "run", "--config", str(device.config)],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        env=device.env,
    )
    try:
        wait(lambda: device.running() == v1, "the first install")
        wait(lambda: len(proxy.seen(b"/events")) >= 1, "the event stream")
        # The stream dies, and each reconnection is reset for a while.
        proxy.fault = Fault.reset(match=b"/events")
        proxy.drop_all()
        wait(lambda: len(proxy.seen(b"/events")) >= 4, "three reconnection attempts")
        tries = [r.at for r in proxy.seen(b"/events")][1:]
        gaps = [b - a for a, b in itertools.pairwise(tries)]
        # Back-off: each wait longer than the one before, no tight loop.
        assert gaps[-1] > gaps[0] and gaps[0] >= 0.5, gaps
        before = len(proxy.seen(b"/events"))
        proxy.fault = Fault.none()
        wait(lambda: len(proxy.seen(b"/events")) > before, "a reconnection")
        time.sleep(1)  # the stream is subscribed before the rollout starts
        # The stream works again: a new rollout wakes the agent long before its 1h interval.
        v2 = server.fleet.commit(script_role("v2", extra=BIG), "v2")
        server.roll_out(v2)
        wait(lambda: device.running() == v2, "the event to wake the agent")
    finally:
        agent.terminate()
        agent.wait(30)


def wait(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
