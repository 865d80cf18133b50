"""The command line as scripts use it: exit codes, --json fields, JSON logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from fleetcore.testing.gitrepo import FleetRepo, script_role


def fleetcore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetcore", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_once_status_history_json(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    once = fleetcore("agent", "once", "--config", str(dev.config_path), "--json")
    assert once.returncode == 0, once.stderr
    assert json.loads(once.stdout)["outcome"] == "updated"
    fleet_repo.commit(script_role("v2", health="exit 1"), "bad")
    failed = fleetcore("agent", "once", "--config", str(dev.config_path), "--json")
    assert failed.returncode == 1
    status = json.loads(
        fleetcore("agent", "status", "--config", str(dev.config_path), "--json").stdout
    )
    assert {"device_id", "role", "commit", "status", "pending_commit", "last_update"} <= set(status)
    assert (status["device_id"], status["role"], status["commit"]) == ("pi-001", "web", v1)
    assert status["status"] == "healthy"
    assert status["last_update"]["result"] == "rollback"
    entries = json.loads(
        fleetcore("agent", "history", "--config", str(dev.config_path), "--json").stdout
    )
    assert [e["result"] for e in entries] == ["success", "rollback"]
    assert set(entries[0]) >= {
        "timestamp",
        "from_commit",
        "to_commit",
        "result",
        "reason",
        "duration_seconds",
    }


def test_json_logs_carry_device_role_and_commit(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    result = fleetcore("--log-format", "json", "agent", "once", "--config", str(dev.config_path))
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records, result.stderr
    assert all(r["device_id"] == "pi-001" and r["role"] == "web" for r in records)
    assert any(r["commit"] == v1 and "now running" in r["message"] for r in records)


def test_config_errors_exit_2_with_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'device_id = "a"\nrole = "web"\nstate_dir = "s"\nsegment = 3\n'
        '[source]\nrepo = "x"\nfetcher = "gti"\n'
    )
    result = fleetcore("agent", "once", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {config}: expected a string, got 3 @ segment")
    assert "Traceback" not in result.stderr
    config.write_text(config.read_text().replace("segment = 3\n", ""))
    result = fleetcore("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert "unknown fetcher 'gti' @ source.fetcher; installed: git" in result.stdout


def test_config_check_reports_every_problem_in_a_fleet_repo(fleet_repo: FleetRepo) -> None:
    fleet_repo.commit(
        {
            "fleet.toml": '[rollout]\nstrategy = "percentage"\npercent = 150\n'
            '[roles.cam.rollout]\nstrategy = "canry"\n',
            "devices/pi-1.toml": 'auto_update = "yes"\n',
            "roles/web/role.toml": '[health]\nchecks = ["htp"]\n',
            "roles/web/activate.sh": "#!/bin/sh\n",
            "roles/empty/README": "no activator here\n",
        }
    )
    result = fleetcore("config", "check", "--repo", str(fleet_repo.path), "--json")
    assert result.returncode == 2
    problems = json.loads(result.stdout)["problems"]
    text = "\n".join(problems)
    assert "percent must be between 0 and 100, got 150 @ rollout.percent" in text
    assert "unknown rollout strategy 'canry' @ roles.cam.rollout.strategy" in text
    assert "expected true or false, got 'yes' @ auto_update" in text
    assert "unknown health check 'htp' @ health.htp" in text
    assert "no activator fits this role" in text
    assert len(problems) == 5


def test_plugins_json_lists_builtins_as_ordinary_plugins() -> None:
    plugins = {p["name"]: p for p in json.loads(fleetcore("plugins", "--json").stdout)}
    assert plugins["git"]["distribution"] == "fleetcore-git"
    assert plugins["git"]["provides"]["fetcher"] == ["git"]
    assert plugins["tcp-port"]["provides"] == {"health check": ["tcp-port"]}
    assert plugins["test-observer"]["hooks"] == sorted(plugins["test-observer"]["hooks"])
    disabled = json.loads(
        fleetcore("plugins", "--json", env={"FLEETCORE_DISABLE_PLUGINS": "http"}).stdout
    )
    assert {p["name"]: p["status"] for p in disabled}["http"] == "disabled"


def test_lifecycle_hooks_reach_an_installed_plugin(device, fleet_repo, tmp_path) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    events = tmp_path / "events.jsonl"
    fleetcore(
        "agent",
        "once",
        "--config",
        str(dev.config_path),
        env={"FLEETCORE_TESTPLUGIN_EVENTS": str(events)},
    )
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert kinds == ["update_started", "update_finished"]


def test_bundle_create_and_apply_offline(device, fleet_repo: FleetRepo, tmp_path) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    fleet_repo.commit({"roles/web/link.conf": None}, "noop")
    bundle = tmp_path / "web.bundle"
    made = fleetcore(
        "bundle",
        "create",
        "--repo",
        str(fleet_repo.path),
        "--commit",
        v1[:10],
        "--role",
        "web",
        "-o",
        str(bundle),
        "--json",
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["commit"] == v1
    # An air-gapped device: its configured repo is unreachable.
    dev = device(repo="git://127.0.0.1:9/none")
    applied = fleetcore("agent", "apply", "--bundle", str(bundle), "--config", str(dev.config_path))
    assert applied.returncode == 0, applied.stderr
    assert dev.running() == f"v1 {v1}"
    history = json.loads(
        fleetcore("agent", "history", "--config", str(dev.config_path), "--json").stdout
    )
    assert history[-1]["reason"] == "bundle"


def test_a_tampered_bundle_is_refused(device, fleet_repo: FleetRepo, tmp_path) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    bundle = tmp_path / "web.bundle"
    fleetcore(
        "bundle",
        "create",
        "--repo",
        str(fleet_repo.path),
        "--commit",
        v1,
        "--role",
        "web",
        "-o",
        str(bundle),
    )
    tampered = tmp_path / "tampered.bundle"
    with tarfile.open(bundle) as src, tarfile.open(tampered, "w:gz") as out:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name == "role/config/app.conf":
                data = b"marker=evil\n"
                member.size = len(data)
            out.addfile(member, __import__("io").BytesIO(data) if data is not None else None)
    dev = device()
    result = fleetcore(
        "agent", "apply", "--bundle", str(tampered), "--config", str(dev.config_path)
    )
    assert result.returncode == 1
    assert "config/app.conf" in result.stdout and "checksum differs" in result.stdout
    assert dev.running() is None
