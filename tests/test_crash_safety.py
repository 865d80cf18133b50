"""Kill -9 at any point of an update; the next run ends on the old or the new
release, healthy, and the history says what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetcore.testing.gitrepo import FleetRepo, script_role

PAUSE = 'if [ -f "$FLEETCORE_TEST_PAUSE" ]; then sleep 60; fi\n'


def role(marker: str, pause_in: str) -> dict[str, str]:
    files = script_role(marker, validate="exit 0")
    script = {"validate": "validate.sh", "activate": "activate.sh", "health": "health.sh"}[pause_in]
    path = f"roles/web/{script}"
    body = files[path]
    # Pause where the test wants to pull the plug (after activate.sh did its work).
    files[path] = (
        body + PAUSE
        if pause_in == "activate"
        else body.replace("#!/bin/sh\n", "#!/bin/sh\n" + PAUSE, 1)
    )
    return files


def wait_for_phase(state: Path, phase: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            flight = json.loads((state / "state.json").read_text()).get("in_flight")
        except (OSError, ValueError):
            flight = None
        if flight and flight["phase"] == phase:
            time.sleep(0.3)  # let the script reach its pause
            return
        time.sleep(0.05)
    raise AssertionError(f"the update never reached phase {phase}")


def agent_once(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fleetcore", "agent", "once", "--config", str(config)],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("phase", ["validate", "activate", "health"])
def test_kill_mid_update_then_rerun_ends_consistent(
    device, fleet_repo: FleetRepo, tmp_path, phase: str
) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    env = {**os.environ, "FLEETCORE_TEST_PAUSE": str(tmp_path / "pause")}
    first = agent_once(dev.config_path, env)
    assert first.wait(60) == 0, first.stdout.read() if first.stdout else ""

    v2 = fleet_repo.commit(role("v2", phase), "v2")
    (tmp_path / "pause").touch()
    victim = agent_once(dev.config_path, env)
    wait_for_phase(dev.state, phase)
    os.killpg(victim.pid, signal.SIGKILL)  # the plug is pulled: agent and its scripts
    victim.wait(10)
    (tmp_path / "pause").unlink()

    rerun = agent_once(dev.config_path, env)
    output = rerun.stdout.read() if rerun.stdout else ""
    assert rerun.wait(60) == 0, output
    current = os.readlink(dev.state / "current")
    assert current == f"releases/web-{v2[:12]}", output
    assert dev.running() == f"v2 {v2}"  # what runs is what the link says
    state = json.loads((dev.state / "state.json").read_text())
    assert state["in_flight"] is None and state["status"] == "healthy"
    lines = [json.loads(x) for x in (dev.state / "history.jsonl").read_text().splitlines()]
    interrupted = [h for h in lines if "interrupted" in h["reason"]]
    assert len(interrupted) == 1
    assert interrupted[0]["reason"] == f"interrupted during {phase}"
    # Before the switch nothing ran from v2, so nothing needs rolling back.
    assert interrupted[0]["result"] == ("failed" if phase == "validate" else "rollback")
    assert lines[-1]["result"] == "success" and lines[-1]["to_commit"] == v2
    releases = sorted(p.name for p in (dev.state / "releases").iterdir() if p.is_dir())
    assert releases == sorted([f"web-{v1[:12]}", f"web-{v2[:12]}"])
    assert not any((dev.state / "staging").glob("*"))


def test_a_rollback_cut_while_removing_the_new_release_is_finished(device, fleet_repo) -> None:
    # Found by benchmarks/power_cuts.py: the power went while the rollback was
    # deleting the failed release, leaving half a folder that no activator fits.
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    assert dev.agent().once().commit == v1
    v2 = fleet_repo.commit(script_role("v2", health="exit 1"), "v2 is broken")
    state = json.loads((dev.state / "state.json").read_text())
    half = dev.state / "releases" / f"web-{v2[:12]}"
    (half / "config").mkdir(parents=True)
    (half / "config" / "app.conf").write_text("marker=v2\n")  # activate.sh already gone
    state["in_flight"] = {
        "to_commit": v2,
        "from_commit": v1,
        "release": half.name,
        "phase": "rollback",
        "started": state["last_check"],
        "reason": "rollout",
        "from_release": f"web-{v1[:12]}",
        "previous_release": None,
        "status_before": "healthy",
    }
    (dev.state / "state.json").write_text(json.dumps(state))
    result = dev.agent().once()  # recovers, then tries v2 again: rolled back
    assert result.commit == v1, result
    state = json.loads((dev.state / "state.json").read_text())
    assert state["in_flight"] is None and dev.running() == f"v1 {v1}"
    assert not half.exists()
