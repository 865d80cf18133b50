"""Blast-radius protection end to end: a real server process, fleets from
``fleetcore simulate`` and real ``fleetcore agent`` processes.

The simulated fleets are smaller than a production one (``DEVICES``) so the
suite stays short on a shared machine; docs/server.md gives the figures. The
times are the server's own (when a failure arrived, when the engine acted),
read back from its database."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from fleetcore.testing.gitrepo import FleetRepo, script_role
from fleetcore.testing.serverproc import FLEETCORE, ServerProcess

DEVICES = int(os.environ.get("FLEETCORE_TEST_BLAST_DEVICES", "500"))  # 2000: docs/server.md
REPORT = 10.0  # seconds: the simulated devices' report interval


def _until(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _fleet(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEETCORE, "fleet", "--server", server.url, "--token", server.admin_token(), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _db(server: ServerProcess) -> sa.Engine:
    return sa.create_engine(f"sqlite:///{server.data_dir / 'fleetcore.db'}")


def _at(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


@contextmanager
def _simulated(server: ServerProcess, *args: str, devices: int = DEVICES) -> Iterator[None]:
    sim = subprocess.Popen(
        [*FLEETCORE, "simulate", "--server", server.url,
         "--enrollment-token", server.enrollment_token(), "--devices", str(devices),
         "--report-interval", f"{REPORT:g}s", "--poll-interval", "60s", "--update-time", "0.2s",
         "--duration", "300s", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _until(
            "the devices to enroll",
            lambda: server.api("GET", "/v1/fleet/status")["total"] >= devices,
        )
        yield
    finally:
        sim.terminate()
        sim.wait(30)


def _stable(server: ServerProcess, commit: str, apply: Callable[[], Any] = lambda: None) -> None:
    """``commit`` out to every device (``apply`` makes them take it) and
    finished: the last known good one."""
    server.api(
        "POST",
        "/v1/rollouts",
        {"commit": commit, "strategy": "percentage",
         "steps": [{"options": {"percent": 100}, "wait_seconds": 0}]},
    )  # fmt: skip
    apply()
    _until(
        "the first rollout to complete",
        lambda: server.api("GET", "/v1/rollouts")["rollouts"][0]["state"] == "completed",
    )


def _emergency(server: ServerProcess) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        for i in server.api("GET", "/v1/incidents")["incidents"]:
            if i["level"] == "emergency":
                return dict(i)
        return None

    incident: dict[str, Any] = _until("an emergency", found)
    return incident


def _first_failure_to_halt(server: ServerProcess, commit: str, incident: dict[str, Any]) -> float:
    with _db(server).connect() as conn:
        first = conn.execute(
            sa.text(
                "SELECT min(received_at) FROM history WHERE to_commit = :c "
                "AND result IN ('failed', 'rollback')"
            ),
            {"c": commit},
        ).scalar_one()
    halted = next(
        a for a in incident["actions"] if a["action"] == "halt" and "every" in a["detail"]
    )
    return float(_at(halted["at"]) - first)


def _commits(server: ServerProcess) -> dict[str, int]:
    return {c["commit"]: c["devices"] for c in server.api("GET", "/v1/fleet/status")["commits"]}


def test_a_commit_that_breaks_pi3_is_stopped_at_the_canaries(
    tmp_path: Path, alertmanager: Any
) -> None:
    repo = FleetRepo.create(tmp_path / "repo")
    good = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n"}, "v1")
    bad = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n# v2\n"}, "v2")
    with (
        ServerProcess(
            tmp_path / "data", repo.path, extra=("--alerts", alertmanager.channel_url)
        ) as server,
        _simulated(
            server, "--label", "hardware=pi4:70%,pi3:30%", "--fail", f"{bad[:10]}:hardware=pi3"
        ),
    ):
        _stable(server, good)
        server.api("POST", "/v1/rollouts", {"commit": bad, "strategy": "canary", "wait_seconds": 5})
        incident = _emergency(server)
        _until("the fleet back on the good commit", lambda: _commits(server) == {good: DEVICES})
        elapsed = _first_failure_to_halt(server, bad, incident)
        shown = json.loads(_fleet(server, "incident", str(incident["id"]), "--json").stdout)
        with _db(server).connect() as conn:
            ran = conn.execute(
                sa.text(
                    "SELECT count(DISTINCT device_id) FROM history "
                    "WHERE to_commit = :c AND result = 'success'"
                ),
                {"c": bad},
            ).scalar_one()
        alert = alertmanager.wait_for(
            lambda a: a["labels"]["alertname"] == "incident-emergency", timeout=60
        )
    print(
        f"\n{DEVICES} devices: first failure to emergency halt {elapsed:.1f}s "
        f"({elapsed / REPORT:.2f} report intervals); {ran} devices ever ran the commit"
    )
    # Canary (5%) plus one step (early, 15%) at the very most.
    assert ran <= DEVICES * 0.20
    assert incident["commit"] == bad
    assert shown["pattern"]["same_hardware"] == "pi3"
    assert any(a["action"] == "pin" for a in shown["actions"])
    assert alert is not None, alertmanager.alerts()
    labels = alert["labels"]
    assert (labels["severity"], labels["commit"], labels["role"]) == ("emergency", bad, "web")
    assert labels["incident"] == str(incident["id"])


def test_two_percent_random_failures_raise_no_false_alarm(tmp_path: Path) -> None:
    repo = FleetRepo.create(tmp_path / "repo")
    good = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n"}, "v1")
    new = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n# v2\n"}, "v2")
    with (
        ServerProcess(tmp_path / "data", repo.path) as server,
        _simulated(server, "--fail", f"{new[:10]}:*:2%"),
    ):
        _stable(server, good)
        server.api(
            "POST",
            "/v1/rollouts",
            {"commit": new, "strategy": "canary", "wait_seconds": 5, "threshold": 0.1},
        )
        _until(
            "the rollout to complete",
            lambda: server.api("GET", "/v1/rollouts")["rollouts"][0]["state"] == "completed",
            timeout=180,
        )
        incidents = server.api("GET", "/v1/incidents")["incidents"]
        commits = _commits(server)
    assert not [i for i in incidents if i["level"] == "emergency"], incidents
    assert commits[new] >= DEVICES * 0.95


def test_a_quarter_failing_is_an_emergency_within_two_report_intervals(tmp_path: Path) -> None:
    repo = FleetRepo.create(tmp_path / "repo")
    good = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n"}, "v1")
    bad = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n# v2\n"}, "v2")
    with (
        ServerProcess(tmp_path / "data", repo.path) as server,
        _simulated(server, "--fail", f"{bad[:10]}:*:25%"),
    ):
        _stable(server, good)
        server.api(
            "POST",
            "/v1/rollouts",
            {"commit": bad, "strategy": "percentage", "threshold": 0.5,
             "steps": [{"options": {"percent": 100}, "wait_seconds": 600}]},
        )  # fmt: skip
        incident = _emergency(server)
        elapsed = _first_failure_to_halt(server, bad, incident)
        _until("the fleet back on the good commit", lambda: _commits(server) == {good: DEVICES})
        locked = server.api("GET", f"/v1/devices/{incident['failed_devices'][0]}")
        r = _fleet(server, "resume-all", "--reason", "v3 is on its way")
        after = server.api("GET", f"/v1/devices/{incident['failed_devices'][0]}")
        resolved = server.api("GET", f"/v1/incidents/{incident['id']}")
    print(
        f"\n{DEVICES} devices, 25% failing: emergency halt {elapsed:.1f}s after the first "
        f"failure ({elapsed / REPORT:.2f} report intervals)"
    )
    assert elapsed <= 2 * REPORT
    assert locked["policy"]["lock"]["locked_by"] == "blast-radius"
    assert locked["desired"]["why"] == "lock"
    assert r.returncode == 0, r.stderr
    assert f"{DEVICES} emergency pin(s) lifted" in r.stdout
    assert after["policy"]["lock"] is None
    assert resolved["state"] == "resolved"


AGENT = """\
device_id = "{device_id}"
role = "web"
segment = "general"
state_dir = "{state}"
update_interval = "1h"

[server]
url = "{url}"
report_interval = "1s"

[throttle]
min_interval = "0s"
failure_pause = "0s"
max_per_hour = 2

[retry]
attempts = 1
backoff = "10ms"

[disk]
reserve = "1M"
"""


def test_real_agents_go_through_an_emergency_onto_the_pinned_commit(
    tmp_path: Path, fleet_repo: FleetRepo
) -> None:
    good = fleet_repo.commit(script_role("v1"), "v1")
    names = [f"pi-{i}" for i in range(5)]
    # Three of five devices fail health on v2.
    bad = fleet_repo.commit(
        script_role("v2", health='case "$FLEETCORE_DEVICE_ID" in pi-0|pi-1|pi-2) exit 1;; esac'),
        "v2 breaks three devices",
    )
    with ServerProcess(tmp_path / "data", fleet_repo.path) as server:
        # Three failing devices make the emergency (60% of five), not two.
        assert _fleet(server, "blast-radius", "--min-devices", "3").returncode == 0
        enrollment = server.enrollment_token()
        envs = {}
        for name in names:
            root = tmp_path / name
            root.mkdir()
            config = root / "agent.toml"
            config.write_text(AGENT.format(device_id=name, state=root / "state", url=server.url))
            envs[name] = (config, {**os.environ, "FLEETCORE_TEST_OUT": str(root / "running")})
            subprocess.run(
                [*FLEETCORE, "agent", "enroll", "--config", str(config),
                 "--enrollment-token", enrollment],
                check=True, capture_output=True, env=envs[name][1],
            )  # fmt: skip

        def once(name: str) -> subprocess.CompletedProcess[str]:
            config, env = envs[name]
            return subprocess.run(
                [*FLEETCORE, "agent", "once", "--config", str(config)],
                capture_output=True, text=True, env=env, timeout=120,
            )  # fmt: skip

        def running(name: str) -> str:
            return (tmp_path / name / "running").read_text().split()[1]

        _stable(server, good, lambda: [once(n) for n in names])  # update 1 of 2 this hour
        assert all(running(n) == good for n in names)
        server.api(
            "POST",
            "/v1/rollouts",
            {"commit": bad, "strategy": "percentage", "threshold": 1.0,
             "steps": [{"options": {"percent": 100}, "wait_seconds": 600}]},
        )  # fmt: skip
        # The healthy ones first (update 2 of 2 this hour), then the three
        # that fail: the rollout's own gate is out of the way (threshold 1).
        first = {n: once(n).returncode for n in reversed(names)}
        assert first == {"pi-4": 0, "pi-3": 0, "pi-2": 1, "pi-1": 1, "pi-0": 1}
        assert running("pi-3") == running("pi-4") == bad
        incident = _emergency(server)
        # The pin passes the throttle: pi-3 and pi-4 already used their hour's updates.
        again = {n: once(n) for n in names}
        ran = {n: running(n) for n in names}
        status = json.loads(_fleet(server, "status", "--json").stdout)
    assert incident["commit"] == bad and incident["roles"] == ["web"]
    assert incident["failed_devices"] == ["pi-0", "pi-1", "pi-2"]
    assert all(r.returncode == 0 for r in again.values()), {n: r.stderr for n, r in again.items()}
    assert ran == dict.fromkeys(names, good)
    assert "passing the throttle" in again["pi-3"].stderr + again["pi-3"].stdout
    assert status["blast_radius"]["incident"]["level"] == "emergency"
