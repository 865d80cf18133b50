"""``fleetcore server`` and ``fleetcore fleet`` as operators run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fleetcore.testing.services import free_port


def fleetcore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetcore", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_server_issues_tokens_from_the_command_line(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    r = fleetcore("server", "token", "create", "--data-dir", data, "--role", "admin")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("fco_")
    issued = r.stdout.strip()
    r = fleetcore("server", "enrollment-token", "--data-dir", data)
    assert r.returncode == 0 and r.stdout.startswith("fce_")
    r = fleetcore("server", "token", "create", "--data-dir", data, "--role", "root")
    assert r.returncode == 2 and "root" in r.stderr
    # Only hashes are stored.
    db = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("fleetcore.db*"))
    assert issued.encode() not in db


def test_fleet_cli_drives_rollouts_and_policy(server: Any, repo: Any) -> None:
    admin = server.token("admin")
    head = repo.git("rev-parse", "HEAD")
    cred = server.enroll("pi-1", "web", "canary")
    server.report("pi-1", cred, status="healthy", commit=head)
    env = {"FLEETCORE_SERVER": server.url, "FLEETCORE_TOKEN": admin}

    def fleet(*args: str) -> subprocess.CompletedProcess[str]:
        return fleetcore("fleet", *args, env=env)

    r = fleet("status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["by_status"] == {"healthy": 1}
    r = fleet("devices")
    assert "pi-1" in r.stdout and "healthy" in r.stdout
    r = fleet("rollout", "start", head, "--strategy", "percentage", "--role", "web",
              "--steps", "10,50,100", "--wait", "10m", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rid = str(json.loads(r.stdout)["id"])
    assert fleet("rollout", "halt", rid, "--reason", "checking").returncode == 0
    r = fleet("rollout", "list")
    assert "halted" in r.stdout and "checking" in r.stdout
    assert fleet("rollout", "resume", rid).returncode == 0
    assert fleet("rollout", "promote", rid).returncode == 0
    r = fleet("rollout", "show", rid)
    assert "step 2/3" in r.stdout and "promote" in r.stdout
    assert fleet("rollout", "abort", rid).returncode == 0
    r = fleet("rollout", "resume", rid)
    assert r.returncode == 1 and "aborted" in r.stderr

    assert fleet("pin", head, "--reason", "freeze", "--expires", "2h").returncode == 0
    r = fleet("device", "pi-1", "--json")
    assert json.loads(r.stdout)["desired"]["why"] == "pin"
    assert fleet("unpin").returncode == 0
    assert fleet("lock", "pi-1", head, "--reason", "debug", "--until", "1h").returncode == 0
    assert json.loads(fleet("device", "pi-1", "--json").stdout)["desired"]["why"] == "lock"
    assert fleet("unlock", "pi-1").returncode == 0
    r = fleet("override", "pi-1", "--no-auto-update")
    assert r.returncode == 0 and "maintenance" in r.stdout
    r = fleet("override", "pi-1", "--clear")
    assert r.returncode == 0
    r = fleet("maintenance-window", "saturday,sunday 02:00-05:00 Europe/Berlin")
    assert r.returncode == 0, r.stderr
    window = json.loads(fleet("device", "pi-1", "--json").stdout)["desired"]["maintenance_window"]
    assert window == {
        "days": ["saturday", "sunday"],
        "start": "02:00",
        "end": "05:00",
        "timezone": "Europe/Berlin",
    }
    r = fleet("maintenance-window", "someday 02:00-05:00")
    assert r.returncode == 2 and "days must be one of" in r.stderr
    assert fleet("maintenance-window", "--clear").returncode == 0
    r = fleet("audit")
    assert "device.override" in r.stdout and "fleet.pin" in r.stdout

    # Bad input is exit code 2 with the server's message; no server is 5.
    r = fleet("rollout", "start", head, "--strategy", "canry")
    assert r.returncode == 2 and "unknown rollout strategy 'canry'" in r.stderr
    r = fleet("device", "nobody")
    assert r.returncode == 2 and "unknown device" in r.stderr
    viewer = server.token("viewer")
    r = fleetcore("fleet", "--server", server.url, "--token", viewer, "pin", head, "--reason", "x")
    assert r.returncode == 1 and "admin" in r.stderr
    r = fleetcore("fleet", "--server", f"http://127.0.0.1:{free_port()}", "--token", "x", "status")
    assert r.returncode == 5 and "cannot reach" in r.stderr


def test_server_run_serves_the_api(tmp_path: Path, repo: Any) -> None:
    import time

    import requests

    data = str(tmp_path / "data")
    token = fleetcore("server", "token", "create", "--data-dir", data, "--role", "viewer").stdout
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetcore", "server", "run", "--data-dir", data,
         "--repo", str(repo.path), "--listen", f"127.0.0.1:{port}", "--page-refresh", "30s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(
                    f"http://127.0.0.1:{port}/v1/fleet/status",
                    headers={"Authorization": f"Bearer {token.strip()}"},
                    timeout=2,
                )
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert r.status_code == 200 and r.json()["total"] == 0
        # Open pages refresh themselves as often as the server says.
        page = requests.get(f"http://127.0.0.1:{port}/login", timeout=5).text
        assert 'data-refresh-ms="30000"' in page
    finally:
        proc.terminate()
        proc.wait(10)


def test_server_run_names_the_option_it_cannot_read(tmp_path: Path, repo: Any) -> None:
    base = ("server", "run", "--data-dir", str(tmp_path / "d"), "--repo", str(repo.path))
    r = fleetcore(*base, "--offline-after", "soon")
    assert r.returncode == 2 and "--offline-after" in r.stderr, r.stderr
    r = fleetcore(*base, "--page-refresh", "500ms")
    assert r.returncode == 2 and "--page-refresh" in r.stderr and "at least 1s" in r.stderr


def test_fleet_cli_lists_issues_and_revokes_tokens_and_devices(server: Any) -> None:
    admin = server.token("admin")
    cred = server.enroll("pi-1", "web")
    env = {"FLEETCORE_SERVER": server.url, "FLEETCORE_TOKEN": admin}

    def fleet(*args: str, token: str = admin) -> subprocess.CompletedProcess[str]:
        return fleetcore("fleet", *args, env={**env, "FLEETCORE_TOKEN": token})

    r = fleet("token", "create", "--role", "operator", "--name", "ci", "--expires", "30d", "--json")
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    operator, operator_id = created["token"], created["id"]
    assert operator.startswith("fco_") and created["expires_at"]
    r = fleet("token", "create", "--role", "viewer")
    assert r.returncode == 0 and r.stdout.startswith("fco_")  # the token alone, for scripts
    viewer = r.stdout.strip()

    r = fleet("token", "list")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.split()[0] == str(operator_id))
    assert "operator" in line and "active" in line and " ci " in line and "test-admin" in line
    assert operator not in r.stdout and viewer not in r.stdout and admin not in r.stdout
    listed = json.loads(fleet("token", "list", "--json").stdout)
    assert {item["name"] for item in listed} >= {"ci", "test-admin"}

    # The viewer may not revoke (exit 1); a revoked token is refused (exit 1).
    r = fleet("token", "revoke", str(operator_id), "--reason", "x", token=viewer)
    assert r.returncode == 1 and "admin" in r.stderr
    assert fleet("status", token=operator).returncode == 0
    assert fleet("token", "revoke", str(operator_id)).returncode == 2  # --reason is required
    r = fleet("token", "revoke", str(operator_id), "--reason", "left the team")
    assert r.returncode == 0 and f"token {operator_id} (ci) revoked" in r.stdout
    r = fleet("status", token=operator)
    assert r.returncode == 1 and "HTTP 401" in r.stderr
    r = fleet("token", "revoke", str(operator_id), "--reason", "again")
    assert r.returncode == 1 and "already revoked" in r.stderr
    r = fleet("token", "revoke", "9999", "--reason", "typo")
    assert r.returncode == 2 and "unknown token 9999" in r.stderr

    r = fleet("revoke", "pi-1", "--reason", "stolen")
    assert r.returncode == 0 and "pi-1: credential revoked" in r.stdout
    assert server.request("GET", "/v1/devices/pi-1/desired", cred).status_code == 401
    r = fleet("revoke", "nobody", "--reason", "x")
    assert r.returncode == 2 and "unknown device" in r.stderr
    r = fleet("audit")
    assert "token.revoke" in r.stdout and "device.revoke pi-1 stolen" in r.stdout


def test_server_lists_and_revokes_tokens_without_a_running_server(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    issued = fleetcore("server", "token", "create", "--data-dir", data, "--role", "admin").stdout
    fleetcore("server", "enrollment-token", "--data-dir", data)
    r = fleetcore("server", "token", "list", "--data-dir", data)
    assert r.returncode == 0, r.stderr
    assert issued.strip() not in r.stdout
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[:4] == ["1", "operator", "admin", "active"]
    assert "admin-token" in lines[0] and "server-cli" in lines[0]
    assert lines[1].split()[:4] == ["2", "enrollment", "-", "active"]

    r = fleetcore("server", "token", "revoke", "1", "--data-dir", data, "--reason", "lost laptop")
    assert r.returncode == 0 and "token 1 (admin-token) revoked" in r.stdout
    listed = json.loads(fleetcore("server", "token", "list", "--data-dir", data, "--json").stdout)
    admin = next(item for item in listed if item["id"] == 1)
    assert (admin["state"], admin["revoked_by"]) == ("revoked", "server-cli")
    r = fleetcore("server", "token", "revoke", "1", "--data-dir", data, "--reason", "again")
    assert r.returncode == 1 and "already revoked" in r.stderr
    r = fleetcore("server", "token", "revoke", "7", "--data-dir", data, "--reason", "typo")
    assert r.returncode == 2 and "unknown token 7" in r.stderr


def test_fleet_help_needs_no_server_and_commands_name_what_is_missing() -> None:
    unset = ("FLEETCORE_SERVER", "FLEETCORE_TOKEN")
    clean = {k: v for k, v in os.environ.items() if k not in unset}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleetcore", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=clean,
        )

    for command in (["token", "revoke"], ["rollout", "start"], ["pin"], ["status"]):
        r = run("fleet", *command, "--help")
        assert r.returncode == 0 and "Usage: fleetcore fleet" in r.stdout, r.stderr
    r = run("fleet", "status")
    assert r.returncode == 2 and "--server" in r.stderr
    r = run("fleet", "--server", "http://127.0.0.1:9", "status")
    assert r.returncode == 2 and "--token" in r.stderr
    r = run("fleet", "--server", "ftp://x", "--token", "t", "status")
    assert r.returncode == 2 and "http(s) URL" in r.stderr
