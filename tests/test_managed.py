"""Managed mode end to end: real agents against a real `fleetcore server`
(uvicorn, SQLite, a git mirror of a real repository)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fleetcore.testing.gitrepo import FleetRepo, script_role
from fleetcore.testing.services import free_port, wait_for_port

FLEETCORE = [sys.executable, "-m", "fleetcore"]


class ControlServer:
    def __init__(self, root: Path, repo: FleetRepo, events: tuple[str, ...] = ()) -> None:
        self.data = root / "server-data"
        self.log = root / "server.log"
        self.repo = repo
        self.events = events
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.admin = self._cli("token", "create", "--role", "admin")
        self.enrollment = self._cli("enrollment-token")

    def _cli(self, *args: str) -> str:
        out = subprocess.run(
            [*FLEETCORE, "server", *args, "--data-dir", str(self.data)],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1].strip()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *FLEETCORE,
                "server",
                "run",
                "--data-dir",
                str(self.data),
                "--repo",
                str(self.repo.path),
                "--listen",
                f"127.0.0.1:{self.port}",
                *(arg for url in self.events for arg in ("--events", url)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )
        assert wait_for_port(self.port, timeout=30), "the server did not start"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
            self.proc = None

    def api(self, method: str, path: str, **kwargs: object) -> requests.Response:
        response = requests.request(
            method,
            f"{self.url}{path}",
            timeout=30,
            headers={"Authorization": f"Bearer {self.admin}"},
            **kwargs,
        )  # type: ignore[arg-type]
        assert response.status_code < 400, response.text
        return response


def everyone(server: ControlServer, commit: str, threshold: float = 0.2) -> None:
    """Roll ``commit`` out to every device at once (``threshold=1``: the
    health gate never halts it, however many devices fail)."""
    server.api(
        "POST",
        "/v1/rollouts",
        json={
            "commit": commit,
            "strategy": "percentage",
            "steps": [{"options": {"percent": 100}, "wait_seconds": 0}],
            "threshold": threshold,
        },
    )


@pytest.fixture
def server(tmp_path: Path, fleet_repo: FleetRepo) -> Iterator[ControlServer]:
    fleet_repo.commit(script_role("v1"), "v1")
    control = ControlServer(tmp_path, fleet_repo)
    control.start()
    yield control
    control.stop()


MANAGED = """\
device_id = "{device_id}"
role = "web"
segment = "{segment}"
state_dir = "{state}"
update_interval = "{interval}"

[server]
url = "{url}"
report_interval = "1s"
{server_extra}

[throttle]
min_interval = "0s"
failure_pause = "0s"
max_per_hour = 1000

[retry]
attempts = 1
backoff = "10ms"

[disk]
reserve = "1M"
{extra}
"""


class ManagedDevice:
    def __init__(
        self,
        root: Path,
        server: ControlServer,
        device_id: str,
        segment: str,
        interval: str = "1h",
        server_extra: str = "",
        extra: str = "",
    ) -> None:
        self.root = root / device_id
        self.root.mkdir(parents=True)
        self.device_id = device_id
        self.out = self.root / "running.txt"
        self.config = self.root / "agent.toml"
        self.config.write_text(
            MANAGED.format(
                device_id=device_id,
                segment=segment,
                state=self.root / "state",
                url=server.url,
                interval=interval,
                server_extra=server_extra,
                extra=extra,
            )
        )
        self.env = {**os.environ, "FLEETCORE_TEST_OUT": str(self.out)}
        out = subprocess.run(
            [
                *FLEETCORE,
                "agent",
                "enroll",
                "--config",
                str(self.config),
                "--enrollment-token",
                server.enrollment,
            ],
            capture_output=True,
            text=True,
            env=self.env,
        )
        assert out.returncode == 0, out.stderr

    def once(self) -> int:
        return subprocess.run(
            [*FLEETCORE, "agent", "once", "--config", str(self.config)],
            capture_output=True,
            env=self.env,
        ).returncode

    def running(self) -> str | None:
        # The role's script rewrites the file with `>`: a read between the
        # truncation and the write sees it empty, which means "not yet".
        try:
            words = self.out.read_text().split()
        except FileNotFoundError:
            return None
        return words[1] if len(words) > 1 else None


def test_enrolled_credential_is_private(server: ControlServer, tmp_path: Path) -> None:
    device = ManagedDevice(tmp_path, server, "pi-000", "general")
    credential = device.root / "state" / "credential"
    assert credential.stat().st_mode & 0o777 == 0o600
    # another device's records are off limits to this credential
    other = requests.get(
        f"{server.url}/v1/devices/pi-999/desired",
        timeout=10,
        headers={"Authorization": f"Bearer {credential.read_text().strip()}"},
    )
    assert other.status_code in (403, 404)


def test_canary_rollout_reaches_segments_in_order(server: ControlServer, tmp_path) -> None:
    segments = {
        "pi-c1": "canary",
        "pi-e1": "early",
        "pi-e2": "early",
        "pi-g1": "general",
        "pi-g2": "general",
    }
    devices = {d: ManagedDevice(tmp_path, server, d, s) for d, s in segments.items()}
    v1 = server.repo.head()
    server.api("POST", "/v1/rollouts", json={"commit": v1, "strategy": "canary", "wait_seconds": 0})
    for _ in range(30):
        if all(d.once() == 0 and d.running() == v1 for d in devices.values()):
            break
    assert {d.running() for d in devices.values()} == {v1}
    v2 = server.repo.commit(script_role("v2"), "v2")
    server.api("POST", "/v1/hooks/git")
    rollout = server.api(
        "POST", "/v1/rollouts", json={"commit": v2, "strategy": "canary", "wait_seconds": 0}
    ).json()
    order: list[str] = []
    for _ in range(40):
        for name, device in devices.items():
            device.once()
            if device.running() == v2 and name not in order:
                order.append(name)
        if len(order) == len(devices):
            break
    assert sorted(order) == sorted(devices)
    reached = [segments[name] for name in order]
    assert reached == sorted(reached, key=["canary", "early", "general"].index)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the engine closes it on its next tick
        state = server.api("GET", f"/v1/rollouts/{rollout['id']}").json()
        if state["state"] == "completed":
            break
        for device in devices.values():
            device.once()  # reports keep flowing
        time.sleep(0.5)
    assert state["state"] == "completed"
    seen = server.api("GET", "/v1/devices/pi-g2").json()
    assert seen["commit"] == v2 and seen["status"] == "healthy"
    # the device's update history reached the server, every entry of it
    assert [(h["to_commit"], h["result"]) for h in reversed(seen["history"])] == [
        (v1, "success"),
        (v2, "success"),
    ]


def test_an_event_wakes_a_running_agent(server: ControlServer, tmp_path) -> None:
    device = ManagedDevice(tmp_path, server, "pi-sse", "canary")
    v1 = server.repo.head()
    everyone(server, v1)
    proc = subprocess.Popen(
        [*FLEETCORE, "agent", "run", "--config", str(device.config)],
        env=device.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while device.running() != v1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert device.running() == v1
        time.sleep(1.0)  # the event stream is open
        v2 = server.repo.commit(script_role("v2"), "v2")
        server.api("POST", "/v1/hooks/git")
        started = time.monotonic()
        everyone(server, v2)
        while device.running() != v2 and time.monotonic() < started + 30:
            time.sleep(0.02)
        woke_after = time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert device.running() == v2  # an hour before its next scheduled cycle
    assert woke_after < 10
    print(f"\nevent to updated release: {woke_after:.2f} s")
    assert "woken by a server event" in proc.stderr.read()


class Lines:
    """A process's stderr, line by line, with when each line arrived."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line))

    def first(self, text: str, after: float = 0.0) -> float | None:
        return next((t for t, line in self.lines if text in line and t >= after), None)

    def wait(self, text: str, timeout: float = 30.0) -> float | None:
        deadline = time.monotonic() + timeout
        while (seen := self.first(text)) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return seen

    @property
    def text(self) -> str:
        return "".join(line for _, line in self.lines)


def test_an_mqtt_event_wakes_an_agent_that_does_not_use_sse(
    tmp_path: Path, fleet_repo: FleetRepo, mqtt_broker: Any
) -> None:
    """`--events mqtt://...` on the server, `events = "mqtt"` on the device:
    the new release arrives in seconds, an hour before the next poll."""
    fleet_repo.commit(script_role("v1"), "v1")
    server = ControlServer(
        tmp_path, fleet_repo, events=(f"{mqtt_broker.url}?topic_prefix=test-fleet",)
    )
    server.start()
    device = ManagedDevice(
        tmp_path,
        server,
        "pi-mqtt",
        "canary",
        server_extra='events = "mqtt"',
        extra=f'[events.mqtt]\nurl = "{mqtt_broker.url}"\ntopic_prefix = "test-fleet"\n',
    )
    v1 = server.repo.head()
    everyone(server, v1)
    proc = subprocess.Popen(
        [*FLEETCORE, "agent", "run", "--config", str(device.config)],
        env=device.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = Lines(proc.stderr)
    try:
        assert log.wait("subscribed to test-fleet/devices/pi-mqtt/events"), log.text
        deadline = time.monotonic() + 30
        while device.running() != v1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert device.running() == v1
        streams = server.api("GET", "/metrics").text
        assert "fleetcore_sse_streams 0" in streams  # the device holds no SSE stream
        v2 = server.repo.commit(script_role("v2"), "v2")
        server.api("POST", "/v1/hooks/git")
        started = time.monotonic()
        everyone(server, v2)
        while device.running() != v2 and time.monotonic() < started + 30:
            time.sleep(0.02)
        done = time.monotonic()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        server.stop()
    log.thread.join(5)
    assert device.running() == v2, log.text  # an hour before its next scheduled cycle
    woken = log.first("mqtt event update-available", after=started)
    update = log.first(f"-> {v2[:12]}", after=started)
    assert woken is not None and update is not None, log.text
    assert "woken by a server event" in log.text
    assert update - started < 5 and done - started < 10
    print(
        f"\nmqtt: rollout started to event received {woken - started:.3f} s, "
        f"to update started {update - started:.3f} s, to new release running "
        f"{done - started:.2f} s"
    )
    assert "sending events over mqtt://127.0.0.1" in server.log.read_text()


def test_the_agent_rides_out_a_stopped_server(server: ControlServer, tmp_path) -> None:
    device = ManagedDevice(tmp_path, server, "pi-off", "general")
    v1 = server.repo.head()
    everyone(server, v1)
    assert device.once() == 0 and device.running() == v1
    server.stop()
    assert device.once() == 5  # unreachable: keeps running v1
    assert device.running() == v1
    status = json.loads(
        subprocess.run(
            [*FLEETCORE, "agent", "status", "--json", "--config", str(device.config)],
            capture_output=True,
            text=True,
            env=device.env,
        ).stdout
    )
    assert status["commit"] == v1 and status["unreachable_since"] is not None
    server.start()
    assert device.once() == 0
    assert device.running() == v1


SECRET = "pg-pass-7f3a9c1e"


def test_server_secrets_reach_the_role_and_nothing_else(server: ControlServer, tmp_path) -> None:
    fleet = [*FLEETCORE, "fleet", "--server", server.url, "--token", server.admin]
    out = subprocess.run(
        [*fleet, "secrets", "set", "web", "DB_PASSWORD", "--reason", "initial"],
        input=SECRET + "\n",
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    listed = subprocess.run(
        [*fleet, "secrets", "list", "web", "--json"], capture_output=True, text=True
    )
    assert [s["name"] for s in json.loads(listed.stdout)] == ["DB_PASSWORD"]
    assert SECRET not in listed.stdout
    viewer = (
        subprocess.run(
            [
                *FLEETCORE,
                "server",
                "token",
                "create",
                "--role",
                "viewer",
                "--data-dir",
                str(server.data),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    refused = subprocess.run(
        [
            *FLEETCORE,
            "fleet",
            "--server",
            server.url,
            "--token",
            viewer,
            "secrets",
            "set",
            "web",
            "X",
        ],
        input="y",
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "admin" in refused.stderr

    role = script_role(
        "v2",
        extra={
            "roles/web/role.toml": '[secrets]\nproviders = ["server"]\n[health]\nsettle = "0s"\n'
        },
    )
    role["roles/web/validate.sh"] = f'#!/bin/sh\ntest "$DB_PASSWORD" = "{SECRET}"\n'
    v2 = server.repo.commit(role, "v2 needs the database password")
    server.api("POST", "/v1/hooks/git")
    device = ManagedDevice(tmp_path, server, "pi-sec", "general")
    everyone(server, v2)
    assert device.once() == 0 and device.running() == v2
    env_file = device.root / "state" / "current" / ".fleetcore.env"
    assert env_file.read_text() == f"DB_PASSWORD={SECRET}\n"
    # Encrypted at rest, and never in the device's state, history or reports.
    assert SECRET.encode() not in (server.data / "fleetcore.db").read_bytes()
    for path in (device.root / "state").glob("*.json*"):
        assert SECRET not in path.read_text(), path
    audit = server.api("GET", "/v1/audit").json()["audit"]
    reads = [a for a in audit if a["action"] == "secrets.read"]
    assert reads and reads[0]["actor"] == "device:pi-sec"
    assert SECRET not in json.dumps(audit)
    # Another device's credential cannot read them.
    other = ManagedDevice(tmp_path, server, "pi-other", "general")
    credential = (other.root / "state" / "credential").read_text().strip()
    stolen = requests.get(
        f"{server.url}/v1/devices/pi-sec/secrets",
        timeout=10,
        headers={"Authorization": f"Bearer {credential}"},
    )
    assert stolen.status_code == 403


def test_an_operator_lets_a_device_leave_safe_mode(server: ControlServer, tmp_path) -> None:
    device = ManagedDevice(tmp_path, server, "pi-safe", "general")
    everyone(server, server.repo.head())
    assert device.once() == 0
    bad = server.repo.commit(script_role("v2", health="exit 1"), "v2 is broken")
    server.api("POST", "/v1/hooks/git")
    # The health gate must not halt the rollout (a halted one hands its
    # commit to nobody) while the device fails on it: on a slow machine the
    # engine's tick would otherwise come between the device's cycles.
    everyone(server, bad, threshold=1.0)
    assert [device.once() for _ in range(4)] == [1, 1, 1, 4]  # three rollbacks, safe mode
    fixed = server.repo.commit(script_role("v3"), "v3 fixes it")
    server.api("POST", "/v1/hooks/git")
    everyone(server, fixed)
    assert device.once() == 4  # a new rollout alone does not lift safe mode
    out = subprocess.run(
        [
            *FLEETCORE,
            "fleet",
            "--server",
            server.url,
            "--token",
            server.admin,
            "resume",
            "pi-safe",
            "--reason",
            "v3 fixes the crash",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert device.once() == 0 and device.running() == fixed
    audit = server.api("GET", "/v1/audit").json()["audit"]
    assert any(a["action"] == "device.resume" and a["target"] == "pi-safe" for a in audit)


def test_the_agent_sends_its_labels_and_operators_filter_on_them(
    server: ControlServer, tmp_path: Path
) -> None:
    labels = '[labels]\nhardware = "pi4"\nnetwork = "site-a"\nenvironment = "prod"\n'
    pi4 = ManagedDevice(tmp_path, server, "pi-l4", "general", extra=labels)
    ManagedDevice(tmp_path, server, "pi-l3", "general", extra=labels.replace("pi4", "pi3"))
    ManagedDevice(tmp_path, server, "pi-none", "general")

    def labels_of(device_id: str) -> dict[str, str]:
        return dict(server.api("GET", f"/v1/devices/{device_id}").json()["labels"])

    # Sent with the enrollment.
    assert labels_of("pi-l4") == {"hardware": "pi4", "network": "site-a", "environment": "prod"}
    assert labels_of("pi-none") == {}

    # And with every status report: an edited [labels] arrives without enrolling again.
    pi4.config.write_text(pi4.config.read_text().replace('"site-a"', '"site-b"'))
    everyone(server, server.repo.head())
    assert pi4.once() == 0
    assert labels_of("pi-l4") == {"hardware": "pi4", "network": "site-b", "environment": "prod"}

    def fleet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FLEETCORE, "fleet", "--server", server.url, "--token", server.admin, *args],
            capture_output=True,
            text=True,
        )

    out = fleet("devices")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split()[0] == "DEVICE" and header.split()[-1] == "LABELS"
    assert {row.split()[0]: row.split()[-1] for row in rows} == {
        "pi-l3": "environment=prod,hardware=pi3,network=site-a",
        "pi-l4": "environment=prod,hardware=pi4,network=site-b",
        "pi-none": "-",
    }
    out = fleet("devices", "--label", "hardware=pi3")
    assert [row.split()[0] for row in out.stdout.splitlines()[1:]] == ["pi-l3"]
    out = fleet("devices", "--label", "environment=prod", "--label", "network=site-b", "--json")
    assert [(d["device_id"], d["labels"]["hardware"]) for d in json.loads(out.stdout)] == [
        ("pi-l4", "pi4")
    ]
    out = fleet("devices", "--label", "hardware")
    assert out.returncode == 2 and "expected KEY=VALUE" in out.stderr

    # A label the server would refuse stops the agent at its configuration.
    bad = tmp_path / "bad.toml"
    bad.write_text(pi4.config.read_text().replace("environment =", '"has space" ='))
    out = subprocess.run(
        [*FLEETCORE, "agent", "enroll", "--config", str(bad), "--enrollment-token", "x"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2, out.stderr
    assert "@ labels.has space" in out.stderr


def test_the_agent_double_checks_what_the_server_says(tmp_path, fleet_repo: FleetRepo) -> None:
    """A stand-in for a server that is wrong (or compromised): it names a
    commit under a 0% rollout. The real server never does; the device must
    notice on its own, with the same strategy plugin."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from fleetcore.agent.agent import Agent
    from fleetcore.config.agent import load_agent_config

    v1 = fleet_repo.commit(script_role("v1"), "v1")
    percent = {"value": 0}

    class Lying(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "commit": v1,
                    "why": "rollout",
                    "reason": "rollout (percentage)",
                    "branch": None,
                    "maintenance_window": None,
                    "resume": 0,
                    "rollout": {
                        "id": 7,
                        "strategy": "percentage",
                        "options": {"percent": percent["value"]},
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Lying)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        state = tmp_path / "state"
        state.mkdir()
        (state / "credential").write_text("fcd_test\n")
        config = tmp_path / "agent.toml"
        config.write_text(
            f'device_id = "pi-x"\nrole = "web"\nstate_dir = "{state}"\n'
            f'[server]\nurl = "http://127.0.0.1:{httpd.server_port}"\n'
            f'[source]\nrepo = "{fleet_repo.path}"\n'
            '[throttle]\nmin_interval = "0s"\nmax_per_hour = 100\n'
        )
        result = Agent(load_agent_config(config)).once()
        assert result.outcome == "deferred" and result.commit is None
        assert "not eligible" in result.message
        percent["value"] = 100  # now the rollout really includes every device
        assert Agent(load_agent_config(config)).once().commit == v1
    finally:
        httpd.shutdown()


def test_staging_devices_are_a_group_and_gate_the_merge(
    server: ControlServer, tmp_path: Path
) -> None:
    """The staging workflow: devices that follow `staging` (by the server's
    override or their agent.toml) take its pushes first, show as a group,
    and `branch-status` says when to merge."""
    v1 = server.repo.head()
    staging = server.repo.commit(script_role("staging"), "try on staging", branch="staging")
    server.api("POST", "/v1/hooks/git")
    by_override = ManagedDevice(tmp_path, server, "pi-s1", "general")
    by_config = ManagedDevice(
        tmp_path, server, "pi-s2", "general", server_extra='branch = "staging"'
    )
    main_device = ManagedDevice(tmp_path, server, "pi-m1", "general")
    everyone(server, v1)
    for device, commit in ((by_override, v1), (by_config, staging), (main_device, v1)):
        assert device.once() == 0
        assert device.running() == commit

    def fleet(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FLEETCORE, "fleet", "--server", server.url, "--token", server.admin, *args],
            capture_output=True,
            text=True,
        )

    out = fleet("branch-status", "ring-2")
    assert (out.returncode, out.stdout.strip()) == (
        1,
        "branch ring-2 is not ready:\n  no device follows branch ring-2",
    )
    assert fleet("branch-status", "staging").returncode == 0
    out = fleet("override", "pi-s1", "--branch", "staging", "--reason", "staging ring")
    assert out.returncode == 0, out.stderr

    out = fleet("branch-status", "staging", "--json")
    assert out.returncode == 1
    answer = json.loads(out.stdout)
    assert answer["ready"] is False and answer["head"] == staging
    assert answer["reasons"] == [f"pi-s1: runs {v1[:12]}, not the head {staging[:12]}"]

    assert by_override.once() == 0 and by_override.running() == staging
    assert main_device.once() == 0 and main_device.running() == v1

    status = json.loads(fleet("status", "--json").stdout)
    group = status["branches"]["staging"]
    assert list(status["branches"]) == ["staging"]
    assert group["head"] == staging
    assert [(d["device_id"], d["by"]) for d in group["devices"]] == [
        ("pi-s1", "override"),
        ("pi-s2", "agent.toml"),
    ]
    assert group["commits"] == [{"commit": staging, "devices": 2, "head": True}]
    assert group["health"] == {"healthy": 2}
    assert all(d["healthy_on_head_since"] for d in group["devices"])
    text = fleet("status").stdout
    assert f"branch staging at {staging[:12]}: 2 device(s), 2 on the head (healthy 2)" in text

    ready = fleet("branch-status", "staging")
    assert ready.returncode == 0, ready.stdout
    assert ready.stdout.strip() == f"branch staging is ready: 2 device(s) healthy on {staging[:12]}"
    wait = fleet("branch-status", "staging", "--for", "1h")
    assert wait.returncode == 1
    assert "pi-s1: healthy on the head for " in wait.stdout and "s of 3600s" in wait.stdout
    assert fleet("branch-status", "staging", "--for", "soon").returncode == 2

    page = requests.get(f"{server.url}/", cookies={"fleetcore_token": server.admin}, timeout=30)
    assert 'id="branch-staging"' in page.text and "pi-s2" in page.text

    # A push whose health check fails: the device rolls back, the branch is not ready.
    broken = server.repo.commit(script_role("broken", health="exit 1"), "broken", branch="staging")
    server.api("POST", "/v1/hooks/git")
    assert by_override.once() == 1
    assert by_override.running() == staging
    out = fleet("branch-status", "staging")
    assert out.returncode == 1
    assert f"pi-s1: runs {staging[:12]}, not the head {broken[:12]}" in out.stdout

    # The device's agent.toml stops following the branch: from its next
    # report on it takes the fleet's rollouts again.
    by_config.config.write_text(by_config.config.read_text().replace('branch = "staging"', ""))
    by_config.once()
    assert by_config.once() == 0 and by_config.running() == v1
    status = json.loads(fleet("status", "--json").stdout)
    assert [d["device_id"] for d in status["branches"]["staging"]["devices"]] == ["pi-s1"]


def test_a_running_agent_reports_its_resources_for_prometheus(
    server: ControlServer, tmp_path: Path
) -> None:
    """Real CPU, memory, disk and network figures from a running agent come
    out of the server's /metrics as that device's series."""
    labels = '[labels]\nhardware = "pi4"\n'
    device = ManagedDevice(tmp_path, server, "pi-res", "general", extra=labels)
    proc = subprocess.Popen(
        [*FLEETCORE, "agent", "run", "--config", str(device.config)],
        env=device.env,
        stderr=subprocess.DEVNULL,
    )

    def series(name: str) -> float | None:
        text = requests.get(f"{server.url}/metrics", timeout=30).text
        prefix = f'fleetcore_device_{name}{{device="pi-res"}} '
        return next(
            (float(x[len(prefix) :]) for x in text.splitlines() if x.startswith(prefix)), None
        )

    try:
        deadline = time.monotonic() + 60
        # A rate needs two reports; the first report's CPU covers the time since boot.
        while series("network_receive_bytes_per_second") is None:
            assert time.monotonic() < deadline, "no network rate reached /metrics"
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    for name in ("cpu_ratio", "memory_ratio", "disk_ratio"):
        value = series(name)
        assert value is not None and 0 <= value <= 1, (name, value)
    disk = os.statvfs(tmp_path)
    assert abs(series("disk_ratio") - (1 - disk.f_bavail / disk.f_blocks)) < 0.02  # type: ignore[operator]
    info = requests.get(f"{server.url}/metrics", timeout=30).text
    assert 'device="pi-res",hardware="pi4"' in info


def test_agent_run_serves_its_own_metrics_when_asked(server: ControlServer, tmp_path: Path) -> None:
    """--metrics-listen: the device's series on a local /metrics, in a format
    promtool accepts, with the server's names and labels."""
    import shutil

    from fleetcore.testing.services import missing

    device = ManagedDevice(
        tmp_path, server, "pi-lan", "general", extra='[labels]\nhardware = "pi5"\n'
    )
    port = free_port()
    proc = subprocess.Popen(
        [*FLEETCORE, "agent", "run", "--config", str(device.config),
         "--metrics-listen", f"127.0.0.1:{port}"],
        env=device.env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for_port(port, timeout=60), "the agent serves no metrics"
        first = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        time.sleep(0.5)
        second = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        missing_page = requests.get(f"http://127.0.0.1:{port}/other", timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert first.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = second.text
    assert 'fleetcore_device_info{agent_version="' in text
    assert 'device="pi-lan",hardware="pi5"' in text
    assert 'fleetcore_device_status{device="pi-lan",status="' in text
    for name in ("cpu_ratio", "memory_ratio", "disk_ratio", "network_receive_bytes_per_second"):
        assert f'fleetcore_device_{name}{{device="pi-lan"}} ' in text, name
    assert missing_page.status_code == 404
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool (Debian package prometheus)")
        return
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # The endpoint goes with the agent.
    assert not wait_for_port(port, timeout=0.5)


def test_an_agent_rotates_its_credential_and_cannot_be_enrolled_over(
    server: ControlServer, tmp_path: Path
) -> None:
    device = ManagedDevice(tmp_path, server, "pi-rot", "general")
    credential = device.root / "state" / "credential"
    old = credential.read_text().strip()

    # Enrolling the same id again with the token alone is refused; the
    # device's credential keeps working.
    def enroll(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*FLEETCORE, "agent", "enroll", "--config", str(device.config), *args],
            capture_output=True,
            text=True,
            env=device.env,
        )

    again = enroll("--enrollment-token", server.enrollment)
    assert again.returncode == 1, again.stderr
    assert "already enrolled" in again.stderr and "--rotate" in again.stderr
    assert credential.read_text().strip() == old
    # 0 or 3 (deferred: nothing released yet); a refused credential fails.
    assert device.once() in (0, 3)

    # Without a token and without --rotate: a usage error.
    assert enroll().returncode == 2
    rotated = enroll("--rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["device_id"] == "pi-rot"
    new = credential.read_text().strip()
    assert new != old and credential.stat().st_mode & 0o777 == 0o600
    refused = requests.get(
        f"{server.url}/v1/devices/pi-rot/desired",
        timeout=10,
        headers={"Authorization": f"Bearer {old}"},
    )
    assert refused.status_code == 401
    assert device.once() in (0, 3)


def test_a_managed_device_refuses_to_go_back_unless_pinned(
    server: ControlServer, tmp_path: Path
) -> None:
    device = ManagedDevice(tmp_path, server, "pi-back", "general")
    v1 = server.repo.head()
    everyone(server, v1)
    assert device.once() == 0 and device.running() == v1
    v2 = server.repo.commit(script_role("v2"), "v2")
    server.api("POST", "/v1/hooks/git")
    everyone(server, v2)
    assert device.once() == 0 and device.running() == v2

    # A rollout of the older commit is not an operator's way back: refused,
    # the device stays, and the history (here and on the server) says why.
    everyone(server, v1)
    assert device.once() == 1
    assert device.running() == v2
    history = server.api("GET", "/v1/devices/pi-back").json()["history"]
    assert any(
        h["to_commit"] == v1 and h["reason"].startswith(f"rollback refused: {v1} is an ancestor")
        for h in history
    ), history

    server.api("PUT", "/v1/fleet/pin", json={"commit": v1, "reason": "v2 is broken"})
    assert device.once() == 0 and device.running() == v1
