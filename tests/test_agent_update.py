"""The update pipeline end to end: real git, real scripts, real state folders."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest

from fleetcore.files import exclusive_lock
from fleetcore.plugin import hookimpl
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import Fetcher
from fleetcore.testing.gitrepo import FleetRepo, script_role
from fleetcore.testing.services import free_port


def history(dev) -> list[dict]:
    return [json.loads(line) for line in (dev.state / "history.jsonl").read_text().splitlines()]


def test_first_install_then_update(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    result = dev.agent().once()
    assert (result.outcome, result.exit_code, result.commit) == ("updated", 0, v1)
    assert dev.running() == f"v1 {v1}"
    assert os.readlink(dev.state / "current") == f"releases/web-{v1[:12]}"
    assert (dev.state / "current" / "config" / "app.conf").read_text() == "marker=v1\n"

    v2 = fleet_repo.commit(script_role("v2"), "v2")
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", v2)
    assert dev.running() == f"v2 {v2}"
    assert os.readlink(dev.state / "previous") == f"releases/web-{v1[:12]}"
    assert [(h["from_commit"], h["to_commit"], h["result"]) for h in history(dev)] == [
        (None, v1, "success"),
        (v1, v2, "success"),
    ]
    # Nothing to do: converged, exit 0, no new history.
    again = dev.agent().once()
    assert (again.outcome, again.exit_code) == ("converged", 0)
    assert len(history(dev)) == 2


def test_validate_failure_keeps_the_current_release(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    bad = fleet_repo.commit(script_role("v2", validate="echo 'port 80 is taken' >&2; exit 3"))
    result = dev.agent().once()
    assert (result.outcome, result.exit_code, result.commit) == ("failed", 1, v1)
    assert "validate.sh" in result.message and "port 80 is taken" in result.message
    assert dev.running() == f"v1 {v1}"  # never activated
    assert os.readlink(dev.state / "current") == f"releases/web-{v1[:12]}"
    assert not (dev.state / "releases" / f"web-{bad[:12]}").exists()
    last = history(dev)[-1]
    assert (last["result"], last["to_commit"]) == ("failed", bad)


def test_failing_health_script_rolls_back(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    bad = fleet_repo.commit(script_role("v2", health="echo 'db unreachable'; exit 1"))
    result = dev.agent().once()
    assert (result.outcome, result.exit_code, result.commit) == ("rolled_back", 1, v1)
    # The previous release was started again.
    assert dev.running() == f"v1 {v1}"
    assert os.readlink(dev.state / "current") == f"releases/web-{v1[:12]}"
    last = history(dev)[-1]
    assert (last["result"], last["from_commit"], last["to_commit"]) == ("rollback", v1, bad)
    assert "health-script" in last["reason"] and "db unreachable" in last["reason"]


def test_failing_http_check_rolls_back(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    port = free_port()  # nothing listens there
    fleet_repo.commit(
        script_role(
            "v2",
            health=None,
            extra={
                "roles/web/role.toml": f'[health]\nsettle = "0s"\n[health.http]\n'
                f'url = "http://127.0.0.1:{port}/healthz"\ntimeout = "1s"\n'
            },
        )
    )
    result = dev.agent().once()
    assert result.outcome == "rolled_back"
    assert f"127.0.0.1:{port}" in result.message
    assert dev.running() == f"v1 {v1}"


def test_first_install_that_fails_leaves_nothing_half_running(device, fleet_repo) -> None:
    fleet_repo.commit(script_role("v1", health="exit 1"), "v1")
    dev = device()
    result = dev.agent().once()
    assert result.outcome == "rolled_back"
    assert not (dev.state / "current").exists()
    status = json.loads((dev.state / "state.json").read_text())
    assert status["status"] == "failed"


def test_rapid_commits_skip_to_the_latest(device, fleet_repo: FleetRepo) -> None:
    # While A is being deployed, B lands (health.sh of A commits it).
    hook = fleet_repo.path.parent / "commit-b.sh"
    hook.write_text(
        f"#!/bin/sh\ncd {fleet_repo.path} && git checkout -q main && "
        "echo b > roles/web/b.txt && git add -A && "
        "git -c user.name=t -c user.email=t@t commit -qm B\n"
    )
    hook.chmod(0o755)
    a = fleet_repo.commit(script_role("A", health=f"{hook} >/dev/null 2>&1; exit 0"), "A")
    dev = device()
    result = dev.agent().once()
    b = fleet_repo.head()
    assert b != a
    assert (result.outcome, result.commit, result.pending_commit) == ("updated", a, b)
    assert result.exit_code == 3  # healthy on A, but B is already waiting
    c = fleet_repo.commit(script_role("C"), "C")
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", c)
    assert [(h["to_commit"], h["result"]) for h in history(dev)] == [
        (a, "success"),
        (b, "skipped"),
        (c, "success"),
    ]
    assert "superseded" in history(dev)[1]["reason"]


class Tampering:
    """A fetcher that wraps the real git fetcher and damages what it fetched."""

    def __init__(self, pm: PluginManager, damage) -> None:
        self.git = pm.registry("fetcher").get("git", where="", source="")
        self.damage = damage

    @hookimpl
    def fleetcore_register_fetchers(self):
        def factory(settings, options):
            source = self.git.factory(settings, self.git.config_type())
            damage = self.damage

            class Damaged:
                head = staticmethod(source.head)
                read = staticmethod(source.read)

                @staticmethod
                def fetch(commit, role, workdir):
                    fetched = source.fetch(commit, role, workdir)
                    damage(fetched.archive)
                    return fetched

            return Damaged()

        yield Fetcher(name="tampered", summary="test", factory=factory)


def flip_content(archive: Path) -> None:
    data = bytearray(archive.read_bytes())
    at = data.find(b"marker=v2")
    data[at + 7] = ord("X")
    archive.write_bytes(bytes(data))


def add_escape(archive: Path) -> None:
    with tarfile.open(archive, "a") as tar:
        info = tarfile.TarInfo("roles/web/../../../escaped")
        info.size = 0
        tar.addfile(info)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (flip_content, "does not match its manifest"),
        (add_escape, "'..'"),
    ],
)
def test_damaged_or_malicious_archives_are_refused(device, fleet_repo, damage, message) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device(source_extra='fetcher = "tampered"')
    pm = PluginManager()
    pm.register(Tampering(pm, lambda _a: None), name="tampering")
    dev.agent(pm).once()
    fleet_repo.commit(script_role("v2"), "v2")
    pm = PluginManager()
    pm.register(Tampering(pm, damage), name="tampering")
    result = dev.agent(pm).once()
    assert result.outcome == "failed"
    assert message in result.message
    assert dev.running() == f"v1 {v1}"
    assert not (dev.root.parent / "escaped").exists()
    assert not any((dev.state / "staging").glob("*"))  # nothing half-made left


def test_unreachable_repo_retries_then_keeps_the_current_release(device, fleet_repo, caplog):
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    offline = device("pi-002", repo=f"git://127.0.0.1:{free_port()}/fleet")
    shutil.rmtree(offline.state, ignore_errors=True)
    shutil.copytree(dev.state, offline.state, symlinks=True)
    result = offline.agent().once()
    assert (result.outcome, result.exit_code, result.commit) == ("unreachable", 5, v1)
    assert "retrying" in caplog.text  # it tried again before giving up
    assert os.readlink(offline.state / "current") == f"releases/web-{v1[:12]}"


def test_a_held_lock_skips_the_cycle(device, fleet_repo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.state.mkdir(parents=True)
    with exclusive_lock(dev.state / "lock"):
        result = dev.agent().once()
    assert (result.outcome, result.exit_code) == ("locked", 3)
    assert dev.running() is None


def test_three_failures_enter_safe_mode_until_resumed(device, fleet_repo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    fleet_repo.commit(script_role("v2", health="exit 1"), "bad")
    outcomes = [dev.agent().once().outcome for _ in range(4)]
    assert outcomes == ["rolled_back", "rolled_back", "rolled_back", "safe_mode"]
    assert dev.running() == f"v1 {v1}"  # it keeps running what runs
    agent = dev.agent()
    assert agent.once().exit_code == 4
    agent.resume()
    fixed = fleet_repo.commit(script_role("v3"), "fixed")
    assert dev.agent().once().commit == fixed


def test_throttle_defers_and_records_pending(device, fleet_repo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    text = dev.config_path.read_text().replace('min_interval = "0s"', 'min_interval = "5m"')
    dev.config_path.write_text(text)
    dev.agent().once()
    v2 = fleet_repo.commit(script_role("v2"), "v2")
    result = dev.agent().once()
    assert (result.outcome, result.exit_code, result.pending_commit) == ("deferred", 3, v2)
    assert "under 5m ago" in result.message
    dev.clock.advance(301)
    assert dev.agent().once().commit == v2


def test_a_pin_back_to_a_good_release_passes_the_throttle(device, fleet_repo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    text = dev.config_path.read_text().replace('min_interval = "0s"', 'min_interval = "5m"')
    dev.config_path.write_text(text.replace("max_per_hour = 1000", "max_per_hour = 2"))
    assert dev.agent().once().commit == v1
    dev.clock.advance(600)
    fleet_repo.commit(script_role("v2"), "v2")
    assert dev.agent().once().outcome == "updated"  # two updates this hour: the cap is reached
    dev.clock.advance(301)
    v3 = fleet_repo.commit(script_role("v3"), "v3")
    assert dev.agent().once().outcome == "deferred"  # an ordinary new commit waits
    # The operator pins the fleet back to v1: that does not wait an hour.
    fleet_repo.commit({"fleet.toml": f'[forced_version]\ncommit = "{v1}"\nreason = "v2 is bad"\n'})
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", v1)
    assert dev.running() == f"v1 {v1}"
    last = history(dev)[-1]
    assert (last["to_commit"], last["result"]) == (v1, "success")
    assert last["reason"].startswith("pin, passing the throttle (")
    assert "in the last hour" in last["reason"]
    assert [h["result"] for h in history(dev) if h["to_commit"] == v3] == ["skipped"]


def test_old_releases_are_cleaned_keeping_current_and_previous(device, fleet_repo) -> None:
    dev = device()
    commits = []
    for n in range(4):
        commits.append(fleet_repo.commit(script_role(f"v{n}"), f"v{n}"))
        assert dev.agent().once().outcome == "updated"
    kept = sorted(p.name for p in (dev.state / "releases").iterdir())
    expected = sorted(
        [
            f"web-{c[:12]}{suffix}"
            for c in commits[-2:]
            for suffix in ("", ".manifest.json", ".stat.json")
        ]
    )
    assert kept == expected


def test_an_update_that_cannot_fit_is_skipped_with_a_clear_reason(device, fleet_repo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    dev.config_path.write_text(
        dev.config_path.read_text().replace('reserve = "1M"', 'reserve = "1000T"')
    )
    fleet_repo.commit(script_role("v2"), "v2")
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("failed", v1)
    assert "disk full" in result.message and "reserve" in result.message
    last = history(dev)[-1]
    assert last["result"] == "skipped" and "disk full" in last["reason"]
    assert dev.running() == f"v1 {v1}"


def test_a_new_forced_version_lifts_safe_mode(device, fleet_repo: FleetRepo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device(max_failures=1)
    dev.agent().once()
    fleet_repo.commit(script_role("v2", health="exit 1"), "bad")
    assert dev.agent().once().outcome == "rolled_back"
    assert dev.agent().once().outcome == "safe_mode"
    fixed = fleet_repo.commit(script_role("v3"), "fixed")
    fleet_repo.commit(
        {"fleet.toml": f'[forced_version]\ncommit = "{fixed}"\nreason = "emergency fix"\n'},
        "pin the fix",
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", fixed)
    assert dev.running() == f"v3 {fixed}"
    assert json.loads((dev.state / "state.json").read_text())["mode"] == "normal"
