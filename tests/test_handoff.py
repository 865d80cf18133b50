"""`fleetcore agent once` beside a running `fleetcore agent run`: it hands its
cycle to the service and reports that cycle's result as its own."""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import sys
import time

from fleetcore.testing.gitrepo import FleetRepo, script_role


def agent_run(dev) -> subprocess.Popen[str]:
    """`fleetcore agent run` as a service, with no scheduled cycle but the first."""
    text = dev.config_path.read_text().replace(
        'segment = "general"\n', 'segment = "general"\nupdate_interval = "1h"\n'
    )
    dev.config_path.write_text(text)
    return subprocess.Popen(
        [sys.executable, "-m", "fleetcore", "agent", "run", "--config", str(dev.config_path)],
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_running(dev, marker: str, timeout: float = 30) -> None:
    """Until the service's first update is done: ``marker`` runs and is in the history."""
    deadline = time.monotonic() + timeout
    while not (dev.running() == marker and (dev.state / "history.jsonl").exists()):
        assert time.monotonic() < deadline, f"{marker} never ran"
        time.sleep(0.05)
    time.sleep(0.2)  # the cycle's tail: state, the newer-commit check


def once(dev, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetcore",
            "agent",
            "once",
            "--config",
            str(dev.config_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def history(dev) -> list[dict[str, object]]:
    lines = (dev.state / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def wait_listening(dev, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not (dev.state / "agent.sock").exists():
        assert time.monotonic() < deadline, "the service never listened"
        time.sleep(0.05)


def wait_answering(dev, timeout: float = 30) -> None:
    """Until the socket accepts a connection (a stale one refuses)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(dev.state / "agent.sock"))
                return
            except OSError:
                assert time.monotonic() < deadline, "the service never listened"
        time.sleep(0.05)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    return proc.stderr.read() if proc.stderr else ""


def test_once_hands_off_to_the_running_service(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    proc = agent_run(dev)
    try:
        wait_running(dev, f"v1 {v1}")
        wait_listening(dev)
        # The service's own first cycle is over once a hand-off has answered.
        assert once(dev).stdout.startswith(f"converged: running {v1[:12]}")
        sock = dev.state / "agent.sock"
        assert stat.S_ISSOCK(sock.lstat().st_mode)
        assert stat.S_IMODE(sock.lstat().st_mode) == 0o600
        before = len(history(dev))
        v2 = fleet_repo.commit(script_role("v2"), "v2")

        result = once(dev)

        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout == f"updated: updated to {v2[:12]}, healthy\n"
        assert dev.running() == f"v2 {v2}"
        entries = history(dev)[before:]
        assert [(e["to_commit"], e["result"]) for e in entries] == [(v2, "success")]

        as_json = once(dev, "--json")
        assert as_json.returncode == 0
        assert json.loads(as_json.stdout) == {
            "outcome": "converged",
            "message": f"running {v2[:12]} (rollout (all))",
            "commit": v2,
            "pending_commit": None,
            "exit_code": 0,
        }
        assert len(history(dev)) == before + 1

        # The hand-off imports none of the agent's libraries (nor the CLI's).
        probe = (
            "import sys; from fleetcore.cli.entry import handed_off; "
            f"code = handed_off(['agent', 'once', '--config', {str(dev.config_path)!r}]); "
            "print(code, [m for m in ('click', 'attrs', 'cattrs', 'pluggy', "
            "'fleetcore.agent.agent') if m in sys.modules])"
        )
        light = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
        )
        assert light.stdout.splitlines()[-1] == "0 []", light.stdout + light.stderr
        assert len(history(dev)) == before + 1
    finally:
        log = stop(proc)
    # Four hand-offs: the first only waited for the service's own first cycle.
    assert log.count("woken by `fleetcore agent once`") == 4
    assert not (dev.state / "agent.sock").exists()  # removed on the way out


def test_a_failed_cycle_reports_its_exit_code_through_the_hand_off(
    device, fleet_repo: FleetRepo
) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    proc = agent_run(dev)
    try:
        wait_running(dev, f"v1 {v1}")
        wait_listening(dev)
        broken = fleet_repo.commit(script_role("v2", health="exit 1"), "v2 broken")
        result = once(dev)
    finally:
        stop(proc)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(f"rolled_back: update to {broken[:12]} rolled back")


def test_without_a_service_once_runs_in_process(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    result = once(dev)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"updated: updated to {v1[:12]}, healthy\n"
    assert not (dev.state / "agent.sock").exists()


def test_a_stale_socket_is_ignored_by_once_and_replaced_by_the_service(
    device, fleet_repo: FleetRepo
) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.state.mkdir(parents=True)
    # What a killed service leaves: a socket file nobody listens on.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(dev.state / "agent.sock"))
    dead.close()

    result = once(dev)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"updated: updated to {v1[:12]}, healthy\n"

    proc = agent_run(dev)
    try:
        wait_answering(dev)
        # Once this hand-off has answered, the service's own first cycle is
        # over too: the next commit can only reach it through the hand-off.
        first = once(dev)
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stdout.startswith(f"converged: running {v1[:12]}")
        v2 = fleet_repo.commit(script_role("v2"), "v2")
        handed = once(dev)
    finally:
        log = stop(proc)
    assert handed.returncode == 0, handed.stdout + handed.stderr
    assert handed.stdout == f"updated: updated to {v2[:12]}, healthy\n"
    assert "removed the stale socket" in log
    assert "woken by `fleetcore agent once`" in log


def test_no_handoff_runs_in_process_and_defers_while_the_service_works(
    device, fleet_repo: FleetRepo
) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    proc = agent_run(dev)
    try:
        wait_running(dev, f"v1 {v1}")
        wait_listening(dev)
        result = once(dev, "--no-handoff")
    finally:
        log = stop(proc)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"converged: running {v1[:12]}")
    assert "woken by" not in log


def test_the_socket_works_past_the_length_of_a_socket_address(tmp_path) -> None:
    from fleetcore.agent.handoff import Listener, ask

    state = tmp_path / ("s" * 60) / ("t" * 60)  # too long for sun_path (108 bytes)
    state.mkdir(parents=True)
    config = tmp_path / "agent.toml"
    config.write_text(f'state_dir = "{state.relative_to(tmp_path)}"\n')  # relative to the file
    reply = {"outcome": "converged", "message": "m", "exit_code": 0}
    listener = Listener(state, wake=lambda: Listener.answer(listener.take(), reply))
    assert listener.start()
    try:
        sock = state / "agent.sock"
        assert stat.S_IMODE(sock.lstat().st_mode) == 0o600
        assert ask(config, timeout=10) == reply
    finally:
        listener.close()
    assert not (state / "agent.sock").exists()
    assert ask(config, timeout=10) is None  # nothing listens: run in-process
