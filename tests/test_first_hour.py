"""A new operator's first hour, with the real commands against a real server
process: `fleetcore init`, `server run`, `agent enroll`, `agent run`, and a
new managed fleet that says what to do first; `fleet rollout watch` follows
real rollouts to completion and to a halt."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetcore.testing.gitrepo import GIT_ENV
from fleetcore.testing.serverproc import FLEETCORE, ServerProcess

ENV = {**os.environ, **GIT_ENV}


def fleetcore(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEETCORE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**ENV, **env},
        timeout=120,
    )


def wait_for(what: str, condition: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def terminal() -> Iterator[tuple[int, Callable[[], str]]]:
    """A pseudo-terminal: its slave end to hand a process, and what was
    written to it (read all along, so the writer never blocks)."""
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield slave, lambda: b"".join(chunks).decode(errors="replace")
    finally:
        os.close(slave)
        reader.join(10)
        os.close(master)


def agent_status(config: Path) -> dict[str, Any]:
    out = fleetcore("agent", "status", "--config", str(config), "--json", cwd=config.parent)
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def head(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_from_nothing_to_a_managed_device_on_its_first_release(tmp_path: Path) -> None:
    out = fleetcore("init", "fleet", "fleet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    repo = tmp_path / "fleet"
    first = head(repo)
    with ServerProcess(tmp_path / "data", repo, extra=("--initial-release", "main")) as server:
        token, first_url = server.enrollment_token(), server.url
        out = fleetcore(
            "init", "agent", "--device-id", "pi-001", "--role", "web", "--repo", str(repo),
            "--state-dir", "state", "--config", "agent.toml", cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        config = tmp_path / "agent.toml"
        written = config.read_text()
        assert agent_status(config)["management"] == "git-only"

        out = fleetcore(
            "agent", "enroll", "--config", "agent.toml", "--server", server.url,
            "--enrollment-token", token, cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        # The device is managed now: the server's table was added, and
        # every line init wrote (its comments too) is still there.
        edited = config.read_text()
        assert edited.startswith(written)
        assert f'[server]\nurl = "{server.url}"\n' in edited
        status = agent_status(config)
        assert status["management"] == "managed"
        assert "enrolled" in status["management_reason"]

        agent = subprocess.Popen(
            [*FLEETCORE, "agent", "run", "--config", "agent.toml"],
            cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(
                "the device to run the initial release",
                lambda: (s := agent_status(config))["commit"] == first and s["status"] == "healthy",
            )
            device = server.api("GET", "/v1/devices/pi-001")
            assert device["desired"]["commit"] == first
            assert (tmp_path / "state" / "web.running").read_text().strip() == first
            rollouts = server.api("GET", "/v1/rollouts")["rollouts"]
            assert [(r["state"], r["created_by"]) for r in rollouts] == [
                ("completed", "initial-release")
            ]
        finally:
            agent.send_signal(signal.SIGTERM)
            agent.wait(60)

    # The flag may stay in a service definition: a fleet with releases is left alone.
    with ServerProcess(tmp_path / "data", repo, extra=("--initial-release", "main")) as server:
        assert len(server.api("GET", "/v1/rollouts")["rollouts"]) == 1

    # A ref the repo does not have stops the server before it serves anything.
    out = fleetcore(
        "server", "run", "--data-dir", "data", "--repo", str(repo), "--listen",
        "127.0.0.1:1", "--initial-release", "no-such-branch", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2
    assert "--initial-release: unknown commit 'no-such-branch'" in out.stderr

    # Enrolling with another server moves the device: its url, in place.
    with ServerProcess(tmp_path / "data2", repo) as other:
        out = fleetcore(
            "agent", "enroll", "--config", "agent.toml", "--server", other.url,
            "--enrollment-token", other.enrollment_token(), cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert config.read_text() == edited.replace(first_url, other.url)


def test_init_fleet_and_init_agent_converge_in_git_only_mode(tmp_path: Path) -> None:
    assert fleetcore("init", "fleet", "fleet", cwd=tmp_path).returncode == 0
    repo = tmp_path / "fleet"
    out = fleetcore(
        "init", "agent", "--device-id", "pi-001", "--role", "web", "--repo", str(repo),
        "--state-dir", "state", "--config", "agent.toml", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    agent = subprocess.Popen(
        [*FLEETCORE, "agent", "run", "--config", "agent.toml"],
        cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        status = wait_for(
            "the device to converge",
            lambda: (s := agent_status(tmp_path / "agent.toml"))["status"] == "healthy" and s,
        )
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(60)
    assert status["commit"] == head(repo)
    assert status["management"] == "git-only"
    assert "agent enroll" in status["management_reason"]
    assert (tmp_path / "state" / "web.running").read_text().strip() == head(repo)


def test_init_refuses_to_overwrite_and_writes_what_config_check_accepts(tmp_path: Path) -> None:
    assert fleetcore("init", "fleet", "fleet", "--role", "kiosk", cwd=tmp_path).returncode == 0
    check = fleetcore("config", "check", "--repo", "fleet", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    assert (tmp_path / "fleet/roles/kiosk/health.sh").stat().st_mode & 0o111
    again = fleetcore("init", "fleet", "fleet", "--role", "kiosk", cwd=tmp_path)
    assert again.returncode == 1
    assert "refusing to overwrite" in again.stderr and "fleet.toml" in again.stderr

    args = ("init", "agent", "--device-id", "d1", "--role", "kiosk", "--repo", "git://x/fleet")
    out = fleetcore(*args, "--server", "https://fleet.example", "--config", "a.toml", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "agent enroll" in out.stdout
    check = fleetcore("config", "check", "--config", "a.toml", cwd=tmp_path)
    assert check.returncode == 0, check.stdout
    before = (tmp_path / "a.toml").read_text()
    again = fleetcore(*args, "--config", "a.toml", cwd=tmp_path)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    assert (tmp_path / "a.toml").read_text() == before
    bad = fleetcore(*args[:3], "no spaces", *args[4:], "--config", "b.toml", cwd=tmp_path)
    assert bad.returncode == 2 and not (tmp_path / "b.toml").exists()


def _managed_device(tmp_path: Path, server: ServerProcess, device_id: str) -> Path:
    config = tmp_path / f"{device_id}.toml"
    out = fleetcore(
        "init", "agent", "--device-id", device_id, "--role", "web",
        "--repo", str(tmp_path / "fleet"), "--server", server.url,
        "--state-dir", f"state-{device_id}", "--config", config.name,
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    # Tests take one update after another: no 5-minute spacing between them.
    with config.open("a") as fh:
        fh.write('\n[throttle]\nmin_interval = "0s"\nfailure_pause = "0s"\nmax_per_hour = 100\n')
    out = fleetcore(
        "agent", "enroll", "--config", config.name, "--enrollment-token",
        server.enrollment_token(), cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return config


def test_a_new_fleet_says_what_to_do_first_and_watch_follows_rollouts(tmp_path: Path) -> None:
    assert fleetcore("init", "fleet", "fleet", cwd=tmp_path).returncode == 0
    repo = tmp_path / "fleet"
    with ServerProcess(tmp_path / "data", repo) as server:
        ops = {"FLEETCORE_SERVER": server.url, "FLEETCORE_TOKEN": server.admin_token()}
        config = _managed_device(tmp_path, server, "pi-001")
        once = fleetcore("agent", "once", "--config", config.name, cwd=tmp_path)
        assert once.returncode == 3
        assert "fleetcore fleet rollout start COMMIT --role web" in once.stdout + once.stderr
        status = fleetcore("fleet", "status", cwd=tmp_path, **ops)
        assert "first step: no rollout has finished for role web" in status.stdout
        data = json.loads(fleetcore("fleet", "status", "--json", cwd=tmp_path, **ops).stdout)
        assert [s["role"] for s in data["first_steps"]] == ["web"]
        assert data["first_steps"][0]["command"].startswith("fleetcore fleet rollout start")

        # To completion: the device installs while the watch follows it.
        start = fleetcore(
            "fleet", "rollout", "start", "main", "--role", "web", "--strategy", "percentage",
            "--steps", "100", "--wait", "0s", "--json", cwd=tmp_path, **ops,
        )  # fmt: skip
        assert start.returncode == 0, start.stderr
        rollout_id = str(json.loads(start.stdout)["id"])
        watch = subprocess.Popen(
            [*FLEETCORE, "fleet", "rollout", "watch", rollout_id, "--interval", "0.5"],
            cwd=tmp_path, env={**ENV, **ops}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert fleetcore("agent", "once", "--config", config.name, cwd=tmp_path).returncode == 0
        out, err = watch.communicate(timeout=120)
        assert watch.returncode == 0, out + err
        assert "targeted 1 updated 0 healthy 0 failed 0" in out
        assert "targeted 1 updated 1 healthy 1 failed 0" in out
        assert "completed" in out.splitlines()[-2] + out.splitlines()[-1]
        again = fleetcore("fleet", "status", "--json", cwd=tmp_path, **ops)
        assert json.loads(again.stdout)["first_steps"] == []

        # To a halt: a release whose health check fails; the health gate halts it.
        (repo / "roles/web/health.sh").write_text("#!/bin/sh\nexit 1\n")
        subprocess.run(
            ["git", "-C", str(repo), "commit", "-qam", "web: broken"], env=ENV, check=True
        )
        start = fleetcore(
            "fleet", "rollout", "start", head(repo), "--role", "web", "--strategy", "percentage",
            "--steps", "100", "--wait", "0s", "--json", cwd=tmp_path, **ops,
        )  # fmt: skip
        assert start.returncode == 0, start.stderr
        rollout_id = str(json.loads(start.stdout)["id"])
        # On a terminal the view is redrawn in place until the rollout halts.
        with terminal() as (tty, screen):
            live = subprocess.Popen(
                [*FLEETCORE, "fleet", "rollout", "watch", rollout_id, "--interval", "0.5"],
                cwd=tmp_path, env={**ENV, **ops}, stdout=tty, stderr=subprocess.PIPE,
            )  # fmt: skip
            once = fleetcore("agent", "once", "--config", config.name, cwd=tmp_path)
            assert once.returncode == 1, once.stdout + once.stderr
            assert live.wait(120) == 1
        shown = screen()
        assert "\x1b[" in shown and "F\x1b[J" in shown  # cursor up and clear: a redraw
        assert "halted" in shown.rsplit("\x1b[J", 1)[-1]
        watch_json = fleetcore(
            "fleet", "rollout", "watch", rollout_id, "--interval", "0.5", "--json", "--timeout",
            "90", cwd=tmp_path, **ops,
        )  # fmt: skip
        assert watch_json.returncode == 1, watch_json.stdout + watch_json.stderr
        ended = json.loads(watch_json.stdout)
        assert ended["state"] == "halted" and ended["exit_code"] == 1
        assert "health gate" in ended["reason"]

        missing = fleetcore("fleet", "rollout", "watch", "999", cwd=tmp_path, **ops)
        assert missing.returncode == 2


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_generated(shell: str, tmp_path: Path) -> None:
    out = fleetcore("completion", shell, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "_FLEETCORE_COMPLETE" in out.stdout
    assert f"{shell}_complete" in out.stdout


def _complete_in_bash(tmp_path: Path, line: str, **env: str) -> list[str]:
    """Load the script in a real bash and run its completion function on
    ``line`` as bash would (COMP_WORDS and COMP_CWORD: the last word is the
    one being completed, empty after a trailing space), printing COMPREPLY."""
    script = tmp_path / "fleetcore.bash"
    script.write_text(fleetcore("completion", "bash", cwd=tmp_path).stdout)
    words = line.split(" ")
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        # Registered for `fleetcore` by loading the script; bash passes the
        # command's name as the first argument.
        "complete -p fleetcore >/dev/null\n"
        "_fleetcore_completion fleetcore\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(
        ["bash", "-c", program],
        capture_output=True,
        text=True,
        env={**ENV, "PATH": _shim(tmp_path), **env},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    return out.stdout.split()


def _shim(tmp_path: Path) -> str:
    """A PATH whose `fleetcore` is the one of this environment (the scripts call it back)."""
    shim = tmp_path / "bin" / "fleetcore"
    shim.parent.mkdir(exist_ok=True)
    shim.write_text(f'#!/bin/sh\nexec {" ".join(FLEETCORE)} "$@"\n')
    shim.chmod(0o755)
    return f"{shim.parent}:{os.environ['PATH']}"


def test_fish_loads_the_script_and_completes_subcommands(tmp_path: Path) -> None:
    script = tmp_path / "fleetcore.fish"
    script.write_text(fleetcore("completion", "fish", cwd=tmp_path).stdout)
    out = subprocess.run(
        ["fish", "--no-config", "-c", f"source {script}; complete -C 'fleetcore agent en'"],
        capture_output=True, text=True, env={**ENV, "PATH": _shim(tmp_path)}, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [line.split("\t")[0] for line in out.stdout.splitlines()] == ["enroll"]


def test_zsh_registers_the_script_and_answers_its_protocol(tmp_path: Path) -> None:
    script = tmp_path / "_fleetcore"
    script.write_text(fleetcore("completion", "zsh", cwd=tmp_path).stdout)
    program = f"autoload -U compinit; compinit -u -D; source {script}; print $_comps[fleetcore]"
    out = subprocess.run(
        ["zsh", "-f", "-c", program],
        capture_output=True, text=True, env={**ENV, "HOME": str(tmp_path)}, timeout=60,
    )  # fmt: skip
    assert out.stdout.strip() == "_fleetcore_completion", out.stderr
    # What the function asks `fleetcore` (outside zsh's line editor, which needs a terminal).
    answer = fleetcore(
        cwd=tmp_path, COMP_WORDS="fleetcore ag", COMP_CWORD="1", _FLEETCORE_COMPLETE="zsh_complete"
    )
    assert answer.stdout.splitlines()[:2] == ["plain", "agent"]


def test_bash_loads_the_script_and_completes_subcommands(tmp_path: Path) -> None:
    assert _complete_in_bash(tmp_path, "fleetcore ag") == ["agent"]
    assert {"enroll", "status", "run"} <= set(_complete_in_bash(tmp_path, "fleetcore agent "))
    # Without a server configured, server-side completion offers nothing, quietly.
    assert _complete_in_bash(tmp_path, "fleetcore fleet device ") == []


def test_bash_completes_device_ids_and_rollouts_from_the_server(tmp_path: Path) -> None:
    assert fleetcore("init", "fleet", "fleet", cwd=tmp_path).returncode == 0
    with ServerProcess(tmp_path / "data", tmp_path / "fleet") as server:
        for device_id in ("pi-001", "pi-002", "cam-01"):
            _managed_device(tmp_path, server, device_id)
        ops = {"FLEETCORE_SERVER": server.url, "FLEETCORE_TOKEN": server.admin_token()}
        assert _complete_in_bash(tmp_path, "fleetcore fleet device pi", **ops) == [
            "pi-001",
            "pi-002",
        ]
        assert _complete_in_bash(tmp_path, "fleetcore fleet secrets list ", **ops) == ["web"]
        server.api(
            "POST", "/v1/rollouts", {"commit": "main", "strategy": "percentage", "role": "web"}
        )
        assert _complete_in_bash(tmp_path, "fleetcore fleet rollout watch ", **ops) == ["1"]
        wrong = {**ops, "FLEETCORE_TOKEN": "not-a-token"}
        assert _complete_in_bash(tmp_path, "fleetcore fleet device pi", **wrong) == []
