"""The server's alerts, as an operator's Alertmanager and webhook see them:
a halted rollout, a device in safe mode, a device offline; never in the way
of the request or the engine that raised them."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fleetcore.agent.clock import ManualClock
from fleetcore.testing.serverproc import ServerProcess


@pytest.fixture
def clock() -> ManualClock:
    # Alertmanager drops alerts whose end has passed: the server's clock runs
    # from the real time here.
    return ManualClock(dt.datetime.now(dt.UTC))


def by(name: str, **labels: str) -> Any:
    return lambda a: (
        a["labels"]["alertname"] == name and all(a["labels"].get(k) == v for k, v in labels.items())
    )


def rollout(server: Any, operator: str, commit: str, **more: Any) -> int:
    body = {
        "commit": commit,
        "strategy": "percentage",
        "role": "web",
        "steps": [{"options": {"percent": 100}, "wait_seconds": 300}],
        **more,
    }
    r = server.request("POST", "/v1/rollouts", operator, json=body)
    assert r.status_code == 201, r.text
    rid: int = r.json()["id"]
    return rid


def test_a_health_gate_halt_and_a_device_in_safe_mode_reach_alertmanager(
    make_server: Any, repo: Any, alertmanager: Any, webhook_receiver: Any
) -> None:
    server = make_server(alerts=(alertmanager.channel_url, webhook_receiver.url))
    operator = server.token("operator")
    bad = repo.commit({"roles/web/activate.sh": "#!/bin/sh\nexit 1\n"}, "broken")
    creds = {n: server.enroll(n, "web") for n in ("pi-0", "pi-1", "pi-2")}
    rid = rollout(server, operator, bad)
    server.report("pi-0", creds["pi-0"], status="healthy", commit=bad)
    server.report(
        "pi-1", creds["pi-1"], status="safe_mode", commit=bad, current_error="health: exit 1"
    )
    server.tick()
    assert server.request("GET", f"/v1/rollouts/{rid}", operator).json()["state"] == "halted"

    halted = alertmanager.wait_for(by("rollout-halted", rollout=str(rid)))
    assert halted is not None, alertmanager.alerts()
    labels = halted["labels"]
    assert (labels["severity"], labels["commit"], labels["role"]) == ("critical", bad, "web")
    assert "1 of 3 targeted devices failed" in halted["annotations"]["summary"]
    safe = alertmanager.wait_for(by("device-safe-mode", device="pi-1"))
    assert safe is not None
    assert (safe["labels"]["severity"], safe["labels"]["commit"], safe["labels"]["role"]) == (
        "critical",
        bad,
        "web",
    )
    assert "health: exit 1" in safe["annotations"]["summary"]
    # The same alerts as JSON to the webhook.
    body = webhook_receiver.wait_for(
        lambda b: any(a["name"] == "rollout-halted" for a in b["alerts"])
    )
    assert body is not None
    hook = next(p for p in server.ctl.alert_pumps if p.label.startswith("http://"))
    deadline = time.monotonic() + 10  # counted once the receiver has answered
    while hook.sent < 2:
        assert time.monotonic() < deadline, hook.sent
        time.sleep(0.05)
    metrics = server.request("GET", "/metrics").text
    assert f'fleetcore_alerts_total{{channel="{hook.label}",result="sent"}}' in metrics

    # Reporting safe mode again is no news; leaving it resolves the alert.
    server.report("pi-1", creds["pi-1"], status="safe_mode", commit=bad)
    server.report("pi-1", creds["pi-1"], status="healthy", commit=bad)
    deadline = time.monotonic() + 30
    while alertmanager.wait_for(by("device-safe-mode", device="pi-1"), timeout=0):
        assert time.monotonic() < deadline, "leaving safe mode did not resolve the alert"
        time.sleep(0.2)
    # The webhook's channel sends on its own thread: it may come second.
    deadline = time.monotonic() + 30
    while True:
        names = [a["name"] for b in webhook_receiver.bodies for a in b["alerts"]]
        if names.count("device-safe-mode") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert names.count("device-safe-mode") == 2  # entered, left (resolved)

    # The operator aborts: the halt alert is resolved too.
    r = server.request("POST", f"/v1/rollouts/{rid}/abort", operator, json={"reason": "bad"})
    assert r.status_code == 200
    deadline = time.monotonic() + 30
    while alertmanager.wait_for(by("rollout-halted", rollout=str(rid)), timeout=0):
        assert time.monotonic() < deadline, "aborting did not resolve the halt alert"
        time.sleep(0.2)


def test_devices_offline_alert_one_by_one_and_as_one_when_many(
    make_server: Any, clock: ManualClock, webhook_receiver: Any
) -> None:
    server = make_server(alerts=(webhook_receiver.url,), offline_after=180.0)
    creds = {n: server.enroll(n, "web") for n in ("cam-1", "cam-2")}
    for name, cred in creds.items():
        server.report(name, cred, status="healthy")
    clock.advance(60)
    server.report("cam-2", creds["cam-2"], status="healthy")
    clock.advance(150)  # cam-1 silent 210s, cam-2 150s
    server.tick()
    server.tick()  # once offline, not alerted again
    body = webhook_receiver.wait_for(
        lambda b: any(a["name"] == "device-offline" for a in b["alerts"])
    )
    offline = [
        a for b in webhook_receiver.bodies for a in b["alerts"] if a["name"] == "device-offline"
    ]
    assert [(a["labels"]["device"], a["severity"], a["resolved"]) for a in offline] == [
        ("cam-1", "warning", False)
    ], body
    assert "silent for 210s" in offline[0]["summary"]
    # Back: the alert is resolved.
    server.report("cam-1", creds["cam-1"], status="healthy")
    assert webhook_receiver.wait_for(
        lambda b: any(a["name"] == "device-offline" and a["resolved"] for a in b["alerts"])
    )
    # A dozen at once (a site's network): one alert, not twelve.
    for i in range(12):
        server.enroll(f"site-{i}", "cam")
    clock.advance(400)
    server.tick()
    many = webhook_receiver.wait_for(
        lambda b: any(a["name"] == "devices-offline" for a in b["alerts"])
    )
    (alert,) = [a for a in many["alerts"] if a["name"] == "devices-offline"]
    assert alert["severity"] == "critical" and alert["detail"]["count"] == 14


def test_a_hanging_receiver_does_not_slow_an_operator_halt(
    make_server: Any, repo: Any, webhook_receiver: Any
) -> None:
    webhook_receiver.hang = 60.0
    server = make_server(alerts=(f"{webhook_receiver.url}?timeout=30s",))
    operator = server.token("operator")
    server.enroll("pi-0", "web")
    rid = rollout(server, operator, repo.git("rev-parse", "HEAD"))
    for i in range(5):
        started = time.monotonic()
        action = "halt" if i % 2 == 0 else "resume"
        r = server.request("POST", f"/v1/rollouts/{rid}/{action}", operator, json={"reason": "x"})
        assert r.status_code == 200, r.text
        # Generous for a loaded machine, far below the receiver's 60s hang.
        assert time.monotonic() - started < 10
    webhook_receiver.hang = 0.0


def test_server_run_sends_alerts_to_alertmanager(
    tmp_path: Path, repo: Any, alertmanager: Any
) -> None:
    with ServerProcess(
        tmp_path / "data", repo.path, extra=("--alerts", alertmanager.channel_url)
    ) as server:
        head = repo.git("rev-parse", "HEAD")
        ro = server.api(
            "POST",
            "/v1/rollouts",
            {"commit": head, "strategy": "percentage", "role": "web",
             "steps": [{"options": {"percent": 100}, "wait_seconds": 300}]},
        )  # fmt: skip
        server.api("POST", f"/v1/rollouts/{ro['id']}/halt", {"reason": "looks wrong"})
        found = alertmanager.wait_for(by("rollout-halted", rollout=str(ro["id"])))
        assert found is not None, alertmanager.alerts()
        assert found["labels"]["severity"] == "warning"  # an operator's halt
        assert (found["labels"]["commit"], found["labels"]["role"]) == (head, "web")
        assert "halted by" in found["annotations"]["summary"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "ftp://hooks.example/x",
            "unknown alert channel 'ftp://'; installed: webhook (http://, https://)",
        ),
        ("pager", "unknown alert channel 'pager'"),
        ("https://hooks.example/x?tiemout=5s", "tiemout"),
        ("alertmanager://am:9093?timeout=0s", "timeout must be between 1s and 5m"),
    ],
)
def test_bad_alerts_values_exit_2_naming_the_option(
    tmp_path: Path, repo: Any, value: str, problem: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fleetcore", "server", "run", "--data-dir", str(tmp_path / "d"),
         "--repo", str(repo.path), "--alerts", value],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "--alerts" in out.stderr and problem in out.stderr, out.stderr
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())
