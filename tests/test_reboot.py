"""Updates that need a reboot: inside the maintenance window, the configured
reboot command runs after activation and the agent finishes the update after
the reboot. The test stands in for the reboot itself: the command only writes
a line, and "after the reboot" is a new agent process state started from the
state folder, as a rebooted device's service would be."""

from __future__ import annotations

import datetime as dt
import json

from fleetcore.testing.gitrepo import FleetRepo, script_role

NEEDS_REBOOT = {"roles/web/role.toml": 'requires_reboot = true\n[health]\nsettle = "0s"\n'}
WINDOW = {
    "devices/pi-001.toml": '[maintenance_window]\ndays = ["sunday"]\n'
    'start = "02:00"\nend = "06:00"\n'
}
FRIDAY_NOON = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
SUNDAY_3AM = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)


def rebooting_device(device, fleet_repo: FleetRepo, tmp_path, **fields):
    fleet_repo.commit({**script_role("v1"), **WINDOW}, "v1")
    reboots = tmp_path / "reboots.log"
    dev = device(extra=f'[reboot]\ncommand = ["sh", "-c", "echo reboot >> {reboots}"]\n', **fields)
    dev.clock._now = FRIDAY_NOON
    assert dev.agent().once().outcome == "updated"
    return dev, reboots


def history(dev) -> list[dict]:
    return [json.loads(x) for x in (dev.state / "history.jsonl").read_text().splitlines()]


def test_a_reboot_update_waits_for_the_window_reboots_and_finishes_after(
    device, fleet_repo, tmp_path
) -> None:
    dev, reboots = rebooting_device(device, fleet_repo, tmp_path)
    v2 = fleet_repo.commit(script_role("v2", extra=NEEDS_REBOOT), "v2 needs a reboot")
    result = dev.agent().once()
    assert (result.outcome, result.pending_commit) == ("deferred", v2)
    assert "maintenance window" in result.message and not reboots.exists()

    dev.clock._now = SUNDAY_3AM
    result = dev.agent().once()
    assert (result.outcome, result.pending_commit) == ("rebooting", v2)
    assert reboots.read_text() == "reboot\n"  # the configured command ran, once
    state = json.loads((dev.state / "state.json").read_text())
    assert state["in_flight"]["phase"] == "reboot"  # what the rebooted agent finds
    assert dev.running() == f"v2 {v2}"  # activated before the reboot

    # "After the reboot": a fresh agent from the state folder finishes the update.
    dev.clock._now = SUNDAY_3AM + dt.timedelta(minutes=2)
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("converged", v2)
    state = json.loads((dev.state / "state.json").read_text())
    assert state["in_flight"] is None and state["status"] == "healthy"
    last = history(dev)[-1]
    assert (last["to_commit"], last["result"]) == (v2, "success")
    assert reboots.read_text() == "reboot\n"  # no second reboot


def test_a_release_unhealthy_after_the_reboot_is_rolled_back(device, fleet_repo, tmp_path):
    # One failure is enough for safe mode: no second try (and reboot) right after.
    dev, reboots = rebooting_device(device, fleet_repo, tmp_path, max_failures=1)
    v1 = fleet_repo.head()
    dev.clock._now = SUNDAY_3AM
    bad = fleet_repo.commit(
        script_role("v2", health="exit 1", extra=NEEDS_REBOOT), "v2 breaks after a reboot"
    )
    assert dev.agent().once().outcome == "rebooting"
    result = dev.agent().once()  # after the reboot
    assert dev.running() == f"v1 {v1}"
    entries = [e for e in history(dev) if e["to_commit"] == bad]
    assert entries and entries[0]["result"] == "rollback"
    assert "after the reboot" in entries[0]["reason"]
    assert (result.outcome, result.commit) == ("safe_mode", v1)
    assert reboots.read_text() == "reboot\n"
