"""The seed's four partition durations, driven by an unreachable repo and a
clock the test moves (hours pass in milliseconds)."""

from __future__ import annotations

import json

import pytest

from fleetcore.agent.loop import interval
from fleetcore.testing.gitrepo import FleetRepo, script_role


def state_of(dev) -> dict:
    return json.loads((dev.state / "state.json").read_text())


def history(dev) -> list[dict]:
    return [json.loads(x) for x in (dev.state / "history.jsonl").read_text().splitlines()]


def cut(fleet_repo: FleetRepo):
    hidden = fleet_repo.path.with_name("fleet-offline")
    fleet_repo.path.rename(hidden)
    return lambda: hidden.rename(fleet_repo.path)


def test_partition_modes_and_recovery(device, fleet_repo: FleetRepo, caplog) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    agent = dev.agent()
    agent.once()
    restore = cut(fleet_repo)
    modes = []
    for minutes in (0, 4, 2, 60, 22 * 60, 120):  # at 0, 4, 6 min, 66 min, 23.1h, 25.1h
        dev.clock.advance(minutes * 60)
        result = dev.agent().once()
        assert (result.outcome, result.exit_code, result.commit) == ("unreachable", 5, v1)
        modes.append(state_of(dev)["network"])
    assert modes == ["online", "online", "disconnected", "isolated", "isolated", "airgapped"]
    assert dev.running() == f"v1 {v1}"  # fully functional on its release throughout
    # Spacing of attempts: a probe an hour while airgapped.
    assert interval(dev.agent()) == 3600
    mode_events = [h["reason"] for h in history(dev) if h["event"] == "mode"]
    assert [r.split(":")[0] for r in mode_events] == [
        "network online -> disconnected",
        "network disconnected -> isolated",
        "network isolated -> airgapped",
    ]

    # Meanwhile an emergency pin lands; the network comes back.
    restore()
    fixed = fleet_repo.commit(script_role("v2"), "v2 fixes the bug")
    fleet_repo.commit(
        {"fleet.toml": f'[forced_version]\ncommit = "{fixed}"\nreason = "security fix"\n'}, "pin v2"
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", fixed)
    after = state_of(dev)
    assert after["network"] == "online" and after["unreachable_since"] is None
    assert after["last_deep_check"] is not None  # full revalidation after airgapped
    outage = [h for h in history(dev) if h["event"] == "outage"]
    assert len(outage) == 1
    assert outage[0]["duration_seconds"] == pytest.approx((4 + 2 + 60 + 22 * 60 + 120) * 60, abs=1)
    assert "(airgapped)" in outage[0]["reason"]


def test_short_partition_is_retried_quietly(device, fleet_repo: FleetRepo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    restore = cut(fleet_repo)
    dev.agent().once()
    waits = [interval(dev.agent()) for _ in range(20)]
    # back-off with jitter, well under the update interval while the outage is young
    assert all(0 < w <= 60 for w in waits) and len(set(waits)) > 1
    dev.clock.advance(120)
    restore()
    assert dev.agent().once().outcome == "converged"
    assert [h for h in history(dev) if h["event"] in ("outage", "mode")] == []


def test_isolated_recovery_checks_the_clock_first(device, fleet_repo: FleetRepo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    restore = cut(fleet_repo)
    dev.agent().once()
    dev.clock.advance(2 * 3600)
    dev.agent().once()
    assert state_of(dev)["network"] == "isolated"
    assert interval(dev.agent()) == 300
    restore()
    assert dev.agent().once().outcome == "converged"
    after = state_of(dev)
    assert after["network"] == "online"
    assert after["last_light_check"] == dev.clock.now().isoformat()  # the clock check ran
    outage = [h for h in history(dev) if h["event"] == "outage"]
    assert "(isolated)" in outage[0]["reason"]


def test_status_shows_the_mode_and_time_in_it(device, fleet_repo: FleetRepo) -> None:
    from fleetcore.agent.report import status_report
    from fleetcore.config.agent import load_agent_config

    fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    cut(fleet_repo)
    dev.agent().once()
    dev.clock.advance(600)
    dev.agent().once()
    report = status_report(load_agent_config(dev.config_path))
    assert report["network"] == "disconnected"
    assert report["network_since"] == dev.clock.now().isoformat()
    assert report["unreachable_since"] is not None
