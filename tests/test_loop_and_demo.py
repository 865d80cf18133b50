"""`fleetcore agent run` as a service manager runs it, and `fleetcore demo`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from fleetcore.agent.loop import interval, run_forever
from fleetcore.testing.gitrepo import FleetRepo, script_role


def agent_run(dev, update_interval: str) -> subprocess.Popen[str]:
    """Start `fleetcore agent run` for a test device with its own interval."""
    text = dev.config_path.read_text().replace(
        'segment = "general"\n', f'segment = "general"\nupdate_interval = "{update_interval}"\n'
    )
    dev.config_path.write_text(text)
    return subprocess.Popen(
        [sys.executable, "-m", "fleetcore", "agent", "run", "--config", str(dev.config_path)],
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_running(dev, marker: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while dev.running() != marker and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dev.running() == marker


def test_run_converges_follows_new_commits_and_stops_on_sigterm(device, fleet_repo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    proc = agent_run(dev, "1s")
    try:
        wait_running(dev, f"v1 {v1}")
        v2 = fleet_repo.commit(script_role("v2"), "v2")
        wait_running(dev, f"v2 {v2}")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    assert "agent stopped" in proc.stderr.read()


def test_loop_survives_a_broken_fleet_toml_and_keeps_running(
    device, fleet_repo: FleetRepo, caplog
) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    agent = dev.agent()
    run_forever(agent, max_cycles=1)
    fleet_repo.commit({"fleet.toml": "[rollout\n"}, "broken policy")
    run_forever(agent, max_cycles=2)
    assert "cycle failed" in caplog.text and "not valid TOML" in caplog.text
    assert dev.running() == f"v1 {v1}"
    assert interval(agent) == 60.0  # mains-powered default, the role sets none


def test_demo_installs_updates_and_rolls_back_by_itself(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fleetcore", "demo", "--git-only", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "FLEETCORE_TEST_OUT": ""},
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "says: Hello from release v1" in out
    assert "says: Hello from release v2" in out
    assert "rolled_back:" in out and "exit code 1" in out
    # after the rollback the v2 page is served again, and v3 was never left running
    assert out.rstrip().count("Hello from release v2") >= 2
    assert "v3 (broken)" not in out.split("rolled back by itself")[1]
    history = out.split("fleetcore agent history")[1]
    assert history.count("success") == 2 and history.count("rollback") == 1
    state = json.loads((tmp_path / "demo/state/state.json").read_text())
    assert state["status"] == "healthy"


def test_sighup_runs_a_cycle_at_once(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    proc = agent_run(dev, "1h")
    try:
        wait_running(dev, f"v1 {v1}")
        v2 = fleet_repo.commit(script_role("v2"), "v2")
        time.sleep(0.5)
        assert dev.running() == f"v1 {v1}"  # an hour to the next cycle
        proc.send_signal(signal.SIGHUP)
        wait_running(dev, f"v2 {v2}")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert "woken by SIGHUP, checking for updates now" in proc.stderr.read()


def test_the_loop_runs_light_checks_that_heal_drift(device, fleet_repo: FleetRepo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    agent = dev.agent()
    run_forever(agent, max_cycles=1)
    conf = dev.state / "current" / "config" / "app.conf"
    conf.write_text("edited by hand\n")
    started = dev.clock.now()
    # Update cycles every 60 s; the first light check comes at 5 minutes.
    run_forever(agent, max_cycles=7)
    assert (dev.clock.now() - started).total_seconds() >= 300
    assert conf.read_text() == "marker=v1\n"
    state = json.loads((dev.state / "state.json").read_text())
    assert state["drift"] == "fixed" and state["last_light_check"] is not None


def test_fleet_demo_rolls_a_commit_through_the_segments_in_order(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fleetcore", "demo", "--no-wait", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    rollout = out.split("rolls out canary -> early -> general")[1].split("== Have a look")[0]
    segments = [
        line.split("(")[1].split(")")[0] for line in rollout.splitlines() if " runs " in line
    ]
    assert segments == ["canary", "early", "early", "general", "general", "general"]
    assert "dashboard: http://127.0.0.1:" in out
    assert "stopped the server and the agents" in out


def test_the_makefile_and_readme_describe_the_demo_that_runs() -> None:
    """`make demo` runs `fleetcore demo`: the server and one agent per device
    of the fleet demo. The descriptions must say so (they once promised a
    single local agent)."""
    from pathlib import Path

    from fleetcore.demo_fleet import DEVICES

    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text()
    assert "\t$(BIN)/fleetcore demo\n" in makefile
    words = {6: "six"}
    header = makefile.split("\n\n")[0]
    assert f"a control server and {words[len(DEVICES)]} agents" in header
    readme = (root / "README.md").read_text()
    assert f"make demo   # a control server and {words[len(DEVICES)]} agents" in readme
    for target in ("demo", "test", "dev", "lint", "types", "bench", "clean"):
        assert f"#   make {target} " in header, target
        assert f"\n{target}:" in makefile, target
