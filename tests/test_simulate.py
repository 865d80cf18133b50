"""``fleetcore simulate`` against a real server process: a few hundred
virtual devices through a canary rollout, checked against the server's view."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from fleetcore.simulate.plan import (
    OptionError,
    Plan,
    devices,
    fails,
    parse_fail,
    parse_label,
    parse_shares,
)
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.serverproc import FLEETCORE, ServerProcess


def simulate(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEETCORE, "simulate", *args], capture_output=True, text=True, timeout=timeout
    )


# -- the plan: a pure function of the options and the seed ---------------------------


def test_shares_become_exact_counts_and_the_same_fleet_each_time() -> None:
    plan = Plan(
        devices=1000,
        roles=parse_shares("web=70%,camera=30%", "--role"),
        labels=(parse_label("hardware=pi4:70%,pi3:30%"),),
        seed=7,
    )
    fleet = devices(plan)
    assert [d.device_id for d in fleet[:2]] == ["sim-000001", "sim-000002"]
    assert sum(d.role == "web" for d in fleet) == 700
    assert sum(d.segment == "canary" for d in fleet) == 50
    assert sum(d.labels["hardware"] == "pi3" for d in fleet) == 300
    assert devices(plan) == fleet
    other = devices(Plan(devices=1000, roles=plan.roles, labels=plan.labels, seed=8))
    assert [d.role for d in other] != [d.role for d in fleet]


def test_failure_rules_pick_matching_devices_at_their_rate() -> None:
    plan = Plan(
        devices=2000,
        labels=(parse_label("hardware=pi4:50%,pi3:50%"),),
        fail=(parse_fail("abc123:hardware=pi3"), parse_fail("any:*:10%")),
    )
    fleet = devices(plan)
    pi3 = [d for d in fleet if d.labels["hardware"] == "pi3"]
    pi4 = [d for d in fleet if d.labels["hardware"] == "pi4"]
    assert all(fails(plan, d, "abc1234567") for d in pi3)
    rate = sum(fails(plan, d, "abc1234567") for d in pi4) / len(pi4)
    assert 0.07 < rate < 0.13
    rate_other = sum(fails(plan, d, "def0000000") for d in fleet) / len(fleet)
    assert 0.07 < rate_other < 0.13


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (lambda t: parse_shares(t, "--role"), "web=120%", "--role: a share must be between"),
        (lambda t: parse_shares(t, "--role"), "web=70%,cam=20%", "add up to 90%"),
        (lambda t: parse_shares(t, "--role"), "web", "expected NAME=SHARE"),
        (parse_fail, "nonsense", "--fail: expected COMMIT:KEY=VALUE"),
        (parse_fail, "zz:role=web", "not a commit prefix"),
        (parse_label, "hardware", "--label: expected KEY=VALUE:SHARE"),
    ],
)
def test_bad_options_name_the_option(parse: object, text: str, message: str) -> None:
    with pytest.raises(OptionError, match=message):
        parse(text)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--role", "web=120%"], "--role"),
        (["--fail", "nonsense"], "--fail"),
        (["--segment", "canary=50%,beta=50%"], "--segment"),
        (["--offline", "60%", "--flap", "60%"], "--offline"),
        (["--update-time", "soon"], "--update-time"),
        (["--stats-file", "/nonexistent-folder/stats.json"], "--stats-file"),
        (["--credentials", "/nonexistent-folder/fleet.credentials"], "--credentials"),
        (["--credentials", "/etc/hostname"], "--credentials"),
    ],
)
def test_the_command_exits_2_naming_the_option(args: list[str], option: str) -> None:
    r = simulate(
        "--server", "http://127.0.0.1:9", "--enrollment-token", "x", "--devices", "3", *args
    )
    assert r.returncode == 2, r.stderr
    assert option in r.stderr


# -- a real server ---------------------------------------------------------------------


def test_a_simulated_fleet_takes_a_canary_rollout(tmp_path: Path) -> None:
    repo = FleetRepo.create(tmp_path / "repo")
    commit = repo.commit(
        {"roles/web/activate.sh": "#!/bin/sh\n", "roles/camera/activate.sh": "#!/bin/sh\n"}, "v1"
    )
    with ServerProcess(tmp_path / "data", repo.path) as server:
        token = server.enrollment_token()
        sim = subprocess.Popen(
            [*FLEETCORE, "simulate", "--server", server.url, "--enrollment-token", token,
             "--devices", "300", "--role", "web=70%,camera=30%", "--report-interval", "3s",
             "--label", "hardware=pi4:70%,pi3:30%", "--label", "network=site-a:100%",
             "--poll-interval", "20s", "--update-time", "0.2s",
             "--fail", f"{commit[:10]}:role=camera:10%",
             "--until-converged", "--duration", "150s", "--json",
             "--stats-file", str(tmp_path / "stats.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while server.api("GET", "/v1/fleet/status")["total"] < 300:
                assert time.monotonic() < deadline, "the devices did not enroll"
                time.sleep(0.5)
            # A tenth of the cameras failing is what this fleet tolerates: the
            # rollout's gate (threshold 0.5) and blast-radius protection (which
            # would hold the rollout at 5% of a role) are told so.
            server.api(
                "PUT",
                "/v1/fleet/blast-radius",
                {"warning": 0.5, "critical": 0.5, "emergency": 0.5},
            )
            server.api(
                "POST",
                "/v1/rollouts",
                {"commit": commit, "strategy": "canary", "wait_seconds": 1, "threshold": 0.5},
            )
            # A watcher sees the run so far, rewritten every 10 s.
            while not (tmp_path / "stats.json").exists():
                assert time.monotonic() < deadline + 15, "no stats file after 10 s"
                time.sleep(0.5)
            so_far = json.loads((tmp_path / "stats.json").read_text())
            out, err = sim.communicate(timeout=200)
        finally:
            if sim.poll() is None:
                sim.kill()
        assert sim.returncode == 0, err
        summary = json.loads(out)
        assert so_far["devices"] == 300 and so_far["enrolled"] == 300
        assert so_far["reports"]["sent"] <= summary["reports"]["sent"]
        buckets = summary["latency_buckets_ms"]
        assert list(buckets)[:3] == ["1", "2.5", "5"] and list(buckets)[-1] == "+Inf"
        assert list(buckets.values()) == sorted(buckets.values())  # cumulative
        assert buckets["+Inf"] == summary["latency_ms"]["requests"]
        server.rollout_ended(server.api("GET", "/v1/rollouts")["rollouts"][0]["id"])
        time.sleep(4)  # the last reports reach the database in the next group commit
        status = json.loads(
            subprocess.run(
                [*FLEETCORE, "fleet", "--server", server.url, "--token", server.admin_token(),
                 "status", "--json"],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        rollouts = server.api("GET", "/v1/rollouts")["rollouts"]
        listed = server.api("GET", "/v1/devices")["devices"]
        pi3 = server.api("GET", "/v1/devices?label=hardware%3Dpi3&label=network%3Dsite-a")

    assert summary["converged"] is True
    assert summary["devices"] == summary["enrolled"] == status["total"] == 300
    failed = summary["updates"]["failed"]
    # About 10% of the 90 cameras fail health on the commit, roll back and stay off it.
    assert 1 <= failed <= 25
    assert summary["updates"]["rolled_back"] == failed
    assert summary["updates"]["success"] == 300 - failed
    assert summary["commits"] == {commit: 300 - failed}
    server_commits = {c["commit"]: c["devices"] for c in status["commits"]}
    assert server_commits == {commit: 300 - failed, "none": failed}
    assert status["by_status"].get("failed") == failed
    assert status["updates_last_hour"] == {"success": 300 - failed, "rollback": failed}
    assert [(r["state"], r["step"]) for r in rollouts] == [("completed", 2)]
    assert summary["events_received"] >= 300  # every device was woken, not left to its poll
    assert summary["errors"] == {}
    assert summary["reports"]["failed"] == 0
    assert summary["latency_ms"]["p99"] is not None
    # The simulated labels, as enrollments and reports carried them: exactly 30% pi3.
    hardware = [d["labels"]["hardware"] for d in listed]
    assert (hardware.count("pi4"), hardware.count("pi3")) == (210, 90)
    assert {d["labels"]["network"] for d in listed} == {"site-a"}
    assert len(pi3["devices"]) == 90
    assert {d["labels"]["hardware"] for d in pi3["devices"]} == {"pi3"}


def test_simulated_devices_woken_over_mqtt_take_a_release(tmp_path: Path, mqtt_broker) -> None:
    """Devices that poll only every ten minutes learn of a rollout through the
    MQTT channel (one wildcard subscription for the whole simulated fleet)."""
    repo = FleetRepo.create(tmp_path / "repo")
    commit = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n"}, "v1")
    devices = 200
    with ServerProcess(tmp_path / "data", repo.path, extra=("--events", mqtt_broker.url)) as server:
        sim = subprocess.Popen(
            [*FLEETCORE, "simulate", "--server", server.url,
             "--enrollment-token", server.enrollment_token(), "--devices", str(devices),
             "--events", mqtt_broker.url, "--report-interval", "2s", "--poll-interval", "10m",
             "--update-time", "0.1s", "--until-converged", "--duration", "90s", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while server.api("GET", "/v1/fleet/status")["total"] < devices:
                assert time.monotonic() < deadline, "the devices did not enroll"
                time.sleep(0.5)
            time.sleep(3)  # every device has made its first poll: the next is 10 min away
            server.api(
                "POST",
                "/v1/rollouts",
                {"commit": commit, "strategy": "percentage",
                 "steps": [{"options": {"percent": 100}, "wait_seconds": 0}]},
            )  # fmt: skip
            out, err = sim.communicate(timeout=120)
        finally:
            if sim.poll() is None:
                sim.kill()
    assert sim.returncode == 0, err
    summary = json.loads(out)
    assert summary["converged"] is True
    assert summary["commits"] == {commit: devices}
    assert summary["events_received"] >= devices
    # Every poll was a device's first or answered an event: none waited for its schedule.
    assert summary["polls"] <= devices + summary["events_received"]


def test_a_credentials_file_lets_a_second_run_resume_the_same_fleet(tmp_path: Path) -> None:
    repo = FleetRepo.create(tmp_path / "repo")
    repo.commit({"roles/web/activate.sh": "#!/bin/sh\n"}, "v1")
    kept = tmp_path / "fleet.credentials"
    with ServerProcess(tmp_path / "data", repo.path) as server:
        token = server.enrollment_token()
        run = ["--server", server.url, "--enrollment-token", token, "--devices", "20",
               "--report-interval", "1s", "--poll-interval", "5s", "--duration", "4s",
               "--events", "none", "--json"]  # fmt: skip
        first = simulate(*run, "--credentials", str(kept))
        again = simulate(*run, "--credentials", str(kept))
        # Without the file the same ids are new enrollments, which the server refuses.
        refused = simulate(*run)
        total = server.api("GET", "/v1/fleet/status")["total"]
        elsewhere = simulate(
            "--server", "http://127.0.0.1:9", "--enrollment-token", token, "--devices", "20",
            "--credentials", str(kept),
        )  # fmt: skip

    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["enrolled"] == 20
    assert kept.stat().st_mode & 0o777 == 0o600
    credentials = json.loads(kept.read_text())["credentials"]
    assert len(credentials) == 20
    assert again.returncode == 0, again.stderr
    resumed = json.loads(again.stdout)
    assert resumed["enrolled"] == 20 and resumed["errors"] == {}
    assert resumed["reports"]["sent"] >= 20 and resumed["reports"]["failed"] == 0
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["errors"] == {"enroll: HTTP 409": 20}
    assert total == 20
    assert elsewhere.returncode == 2
    assert "--credentials" in elsewhere.stderr and "http://127.0.0.1:9" in elsewhere.stderr
    # The credentials are secrets: in the file, never in what the runs print.
    printed = first.stdout + first.stderr + again.stdout + again.stderr + elsewhere.stderr
    assert not any(c in printed for c in credentials.values())
