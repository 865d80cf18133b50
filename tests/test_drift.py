"""Drift found, healed, or left (then safe mode): real files, real git."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from fleetcore.testing.gitrepo import FleetRepo, script_role


def history(dev) -> list[dict]:
    return [json.loads(x) for x in (dev.state / "history.jsonl").read_text().splitlines()]


def installed(device, fleet_repo: FleetRepo, extra: dict[str, str] | None = None, **fields):
    fleet_repo.commit(script_role("v1", extra=extra), "v1")
    dev = device(**fields)
    assert dev.agent().once().outcome == "updated"
    return dev


def test_clean_device_reports_no_drift(device, fleet_repo) -> None:
    dev = installed(device, fleet_repo)
    result = dev.agent().check(deep=True, fix=True)
    assert (result.verdict, result.findings) == ("clean", ())


def test_edited_deleted_and_rechmodded_files_are_restored(device, fleet_repo, tmp_path) -> None:
    dev = installed(device, fleet_repo)
    conf = dev.state / "current" / "config" / "app.conf"
    conf.write_text("marker=tampered\n")
    (dev.state / "current" / "health.sh").chmod(0o777)
    (dev.state / "current" / "activate.sh").unlink()
    events = tmp_path / "events.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetcore",
            "agent",
            "check",
            "--fix",
            "--json",
            "--config",
            str(dev.config_path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "FLEETCORE_TESTPLUGIN_EVENTS": str(events)},
    )
    assert result.returncode == 6, result.stdout + result.stderr
    report = json.loads(result.stdout)
    found = {(f["subject"], f["code"]) for f in report["findings"]}
    assert found == {
        ("config/app.conf", "file-changed"),
        ("health.sh", "file-mode"),
        ("activate.sh", "file-missing"),
    }
    assert [(f["fix"], f["held"]) for f in report["fixes"]] == [("restore-files", True)]
    assert conf.read_text() == "marker=v1\n"
    assert (dev.state / "current" / "health.sh").stat().st_mode & 0o777 == 0o755
    assert (dev.state / "current" / "activate.sh").exists()
    last = history(dev)[-1]
    assert (last["event"], last["result"]) == ("drift", "success")
    assert "config/app.conf" in last["reason"]
    assert [json.loads(x)["event"] for x in events.read_text().splitlines()] == ["drift_found"]
    # and afterwards all is clean again, light and deep
    assert dev.agent().check(deep=True, fix=False).verdict == "clean"


def test_light_check_misses_a_same_size_edit_that_the_deep_check_finds(device, fleet_repo):
    dev = installed(device, fleet_repo)
    conf = dev.state / "current" / "config" / "app.conf"
    st = conf.stat()
    conf.write_text("marker=vX\n")  # same length as marker=v1
    os.utime(conf, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert dev.agent().check(deep=False, fix=False).verdict == "clean"
    deep = dev.agent().check(deep=True, fix=True)
    assert [f.code for f in deep.findings] == ["file-changed"]
    assert deep.verdict == "fixed" and conf.read_text() == "marker=v1\n"


def test_missing_folders_and_wrong_modes_are_repaired(device, fleet_repo, tmp_path) -> None:
    wanted = tmp_path / "data" / "app"
    role = {
        "roles/web/role.toml": '[health]\nsettle = "0s"\n[drift.folders]\n'
        f'folders = [{{ path = "{wanted}", mode = "0750" }}]\n'
    }
    dev = installed(device, fleet_repo, extra=role)
    result = dev.agent().check(deep=False, fix=True)
    assert [f.code for f in result.findings] == ["folder-missing"]
    assert wanted.is_dir() and wanted.stat().st_mode & 0o777 == 0o750
    wanted.chmod(0o777)
    result = dev.agent().check(deep=False, fix=True)
    assert [(f.code, f.expected, f.found) for f in result.findings] == [
        ("folder-mode", "0750", "0777")
    ]
    assert result.verdict == "fixed"


def test_a_fix_that_does_not_hold_enters_safe_mode(device, fleet_repo) -> None:
    # More free space than any disk has: cleaning up cannot help.
    role = {"roles/web/role.toml": '[health]\nsettle = "0s"\n[drift.disk]\nmin_free = "1000T"\n'}
    dev = installed(device, fleet_repo, extra=role)
    result = dev.agent().check(deep=False, fix=True)
    assert result.verdict == "left"
    assert [(f.fix, f.held) for f in result.fixes] == [("free-disk", False)]
    state = json.loads((dev.state / "state.json").read_text())
    assert state["mode"] == "safe_mode" and "self-heal failed: free-disk" in state["mode_reason"]
    v2 = fleet_repo.commit(script_role("v2", extra=role), "v2")
    assert dev.agent().once().outcome == "safe_mode"  # no more updates...
    assert dev.running().startswith("v1")  # ...and it keeps running what runs
    dev.agent().resume()
    assert dev.agent().once().commit == v2


def test_unfixable_findings_are_reported_not_acted_on(device, fleet_repo) -> None:
    role = {
        "roles/web/role.toml": '[health]\nsettle = "0s"\n[drift.dns]\n'
        'names = ["no-such-host.invalid"]\n'
    }
    dev = installed(device, fleet_repo, extra=role)
    result = dev.agent().check(deep=False, fix=False)
    assert [(f.subject, f.code) for f in result.findings] == [
        ("no-such-host.invalid", "dns-failure")
    ]
    assert result.fixes == () and result.verdict == "left"


def test_a_deleted_release_folder_is_found_and_reinstalled(device, fleet_repo) -> None:
    dev = installed(device, fleet_repo)
    target = os.readlink(dev.state / "current")
    shutil.rmtree(dev.state / target)
    result = dev.agent().check(deep=False, fix=True)
    assert [(f.code, f.found) for f in result.findings] == [("release-missing", target)]
    assert (dev.state / "current" / "activate.sh").exists()
    assert dev.running().startswith("v1")


def test_a_corrupted_state_file_is_kept_aside_and_rebuilt(device, fleet_repo, caplog) -> None:
    dev = installed(device, fleet_repo)
    (dev.state / "state.json").write_text('{"status": "heal')
    result = dev.agent().once()
    assert result.outcome == "converged"
    assert list(dev.state.glob("state.json.corrupt-*"))
    assert "state file was unreadable" in caplog.text


def test_clock_offset_is_found_and_synced(device, fleet_repo, tmp_path, monkeypatch) -> None:
    """The system clock cannot be changed on a test machine: a stand-in for
    chrony's command line answers with an offset, and its `makestep` clears it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    offset = tmp_path / "offset"
    offset.write_text("4.250")
    chronyc = bin_dir / "chronyc"
    chronyc.write_text(
        f'#!/bin/sh\nif [ "$1" = makestep ]; then echo 0.0 > {offset}; exit 0; fi\n'
        f'echo "A1B2C3D4,ntp.example,2,1764000000.0,$(cat {offset}),0.0,0.0"\n'
    )
    chronyc.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    dev = installed(device, fleet_repo)
    result = dev.agent().check(deep=True, fix=True)
    assert [(f.code, f.found) for f in result.findings] == [("clock-offset", "4.250s")]
    assert [(f.fix, f.held) for f in result.fixes] == [("sync-clock", True)]


DNS_ROLE = {
    "roles/web/role.toml": '[health]\nsettle = "0s"\n'
    '[drift.dns]\nnames = ["no-such-host.invalid"]\n'
}


def _status(dev) -> dict:
    from fleetcore.agent.report import status_report
    from fleetcore.config.agent import load_agent_config

    return status_report(load_agent_config(dev.config_path))


def test_a_fix_with_nothing_configured_reports_the_drift_without_safe_mode(device, fleet_repo):
    # The defaults: [drift.dns] in the role, no restart-network command on the device.
    dev = installed(device, fleet_repo, extra=DNS_ROLE)
    result = dev.agent().check(deep=False, fix=True)
    assert result.verdict == "left"
    assert [(f.fix, f.held, f.unavailable) for f in result.fixes] == [
        ("restart-network", False, True)
    ]
    status = _status(dev)
    assert status["mode"] == "normal"  # not a failed fix: no safe mode
    assert status["status"] == "degraded" and "no-such-host.invalid" in status["status_reason"]
    v2 = fleet_repo.commit(script_role("v2", extra=DNS_ROLE), "v2")
    assert dev.agent().once().commit == v2  # updates go on


def test_checks_that_need_the_network_are_skipped_while_disconnected(device, fleet_repo):
    # A restart-network command that would fail: if the DNS check ran, safe mode.
    fleet_repo.commit(script_role("v1", extra=DNS_ROLE), "v1")
    dev = device(extra='[drift.fixes.restart-network]\ncommand = ["false"]\n')
    assert dev.agent().once().outcome == "updated"
    moved = fleet_repo.path.with_name("fleet-away")
    fleet_repo.path.rename(moved)  # the repo is gone: an outage begins
    try:
        assert dev.agent().once().outcome == "unreachable"
        result = dev.agent().check(deep=False, fix=True)
        assert result.verdict == "clean" and result.fixes == ()
        assert _status(dev)["mode"] == "normal"
    finally:
        moved.rename(fleet_repo.path)
    # Connected again, the check runs and its failed fix counts.
    assert dev.agent().once().outcome == "converged"
    result = dev.agent().check(deep=False, fix=True)
    assert [(f.fix, f.held, f.unavailable) for f in result.fixes] == [
        ("restart-network", False, False)
    ]
    assert _status(dev)["mode"] == "safe_mode"
