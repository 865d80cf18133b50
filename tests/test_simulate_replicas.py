"""Three server replicas on one PostgreSQL behind a real HAProxy carry a
simulated fleet through a canary rollout while one replica is killed."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.haproxy import HAProxy
from fleetcore.testing.serverproc import FLEETCORE, ServerProcess

DEVICES = 300


def test_a_rollout_completes_when_a_replica_dies(
    tmp_path: Path, postgres: Any, haproxy_binary: str
) -> None:
    repo = FleetRepo.create(tmp_path / "repo")
    commit = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n"}, "v1")
    url = postgres.create_database("replicas_sim")
    replicas = [ServerProcess(tmp_path / f"data{i}", repo.path, db_url=url) for i in range(3)]
    lb = None
    sim = None
    try:
        for replica in replicas:
            replica.start()
        lb = HAProxy.start([r.port for r in replicas])
        assert lb is not None
        survivor = replicas[0]
        sim = subprocess.Popen(
            [*FLEETCORE, "simulate", "--server", lb.url,
             "--enrollment-token", survivor.enrollment_token(), "--devices", str(DEVICES),
             "--report-interval", "3s", "--poll-interval", "10s", "--update-time", "0.5s",
             "--until-converged", "--duration", "240s", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 90
        while survivor.api("GET", "/v1/fleet/status")["total"] < DEVICES:
            assert time.monotonic() < deadline, "the devices did not enroll"
            time.sleep(0.5)
        rollout = survivor.api(
            "POST", "/v1/rollouts", {"commit": commit, "strategy": "canary", "wait_seconds": 2}
        )
        # Kill a replica in the middle of the rollout: once the canaries have the commit.
        deadline = time.monotonic() + 60
        while survivor.api("GET", f"/v1/rollouts/{rollout['id']}")["step"] < 1:
            assert time.monotonic() < deadline, "the canary step did not finish"
            time.sleep(0.2)
        replicas[2].kill()
        out, err = sim.communicate(timeout=300)
        assert sim.returncode == 0, err
        summary = json.loads(out)
        final = survivor.rollout_ended(rollout["id"])
        time.sleep(3)  # the last reports reach the database
        status = survivor.api("GET", "/v1/fleet/status")
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
        if lb is not None:
            lb.stop()
        for replica in replicas:
            replica.stop()

    assert summary["converged"] is True
    assert summary["enrolled"] == DEVICES
    # The killed replica's event streams were cut, and their devices came back elsewhere.
    errors = summary["errors"]
    cut = sum(n for kind, n in errors.items() if kind.startswith("events: stream"))
    assert cut >= DEVICES // 10, errors
    assert summary["commits"] == {commit: DEVICES}
    assert summary["updates"] == {"success": DEVICES, "failed": 0, "rolled_back": 0}
    # Every device is accounted for on the server, on the commit.
    assert status["total"] == DEVICES
    assert {c["commit"]: c["devices"] for c in status["commits"]} == {commit: DEVICES}
    assert status["updates_last_hour"] == {"success": DEVICES}
    # The rollout went through every step once: no decision lost or taken twice.
    assert final["state"] == "completed"
    actions = [d["action"] for d in final["decisions"]]
    assert actions.count("start") == 1
    assert actions.count("complete") == 1
    assert [d["step"] for d in final["decisions"] if d["action"] == "promote"] == [1, 2]
