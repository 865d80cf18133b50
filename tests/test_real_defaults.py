"""The agent with its real defaults, as a new user gets it: no [throttle],
no [retry], no update_interval. A manual clock walks through the hours and
each deferral says why (throttle: 5 min gap, 1 update an hour, a 15 min
pause after a failure, safe mode after 3; intervals by power class)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from fleetcore.agent.agent import Agent
from fleetcore.agent.clock import ManualClock
from fleetcore.agent.loop import interval
from fleetcore.config.agent import load_agent_config
from fleetcore.testing.gitrepo import FleetRepo, script_role

START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def defaults_agent(tmp_path: Path, repo: FleetRepo, clock: ManualClock, extra: str = "") -> Agent:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "pi-001"\nrole = "web"\nstate_dir = "{tmp_path / "state"}"\n{extra}\n'
        f'[source]\nrepo = "{repo.path}"\n'
    )
    return Agent(load_agent_config(config), clock=clock)


def at(clock: ManualClock, minutes: float) -> None:
    """Move the clock to ``minutes`` after START."""
    target = START + dt.timedelta(minutes=minutes)
    clock.advance((target - clock.now()).total_seconds())


def test_the_default_throttle_defers_each_attempt_with_its_reason(
    tmp_path, fleet_repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETCORE_TEST_OUT", str(tmp_path / "running.txt"))
    clock = ManualClock(START)
    agent = defaults_agent(tmp_path, fleet_repo, clock)
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    assert agent.once().commit == v1

    v2 = fleet_repo.commit(script_role("v2"), "v2")
    at(clock, 1)  # the minimum gap between attempts: 5 minutes
    result = agent.once()
    assert (result.outcome, result.pending_commit) == ("deferred", v2)
    assert result.message == "last attempt was under 5m ago"
    assert result.retry_after == START + dt.timedelta(minutes=5)

    at(clock, 6)  # past the gap, but one update an hour
    result = agent.once()
    assert result.outcome == "deferred"
    assert result.message == "already 1 update(s) in the last hour (max_per_hour = 1)"
    assert result.retry_after == START + dt.timedelta(hours=1)

    at(clock, 61)
    assert (agent.once().outcome, agent.store.commit_of(agent.store.current())) == ("updated", v2)

    # A release that fails its health check: rolled back, then a 15 minute pause.
    bad = fleet_repo.commit(script_role("v3", health="exit 1"), "bad")
    at(clock, 122)
    assert agent.once().outcome == "rolled_back"
    at(clock, 130)
    result = agent.once()
    assert result.outcome == "deferred"
    assert result.message.startswith("pausing after a failed update until 10:17:")
    at(clock, 140)  # past the pause, still inside the hour since the last attempt
    assert agent.once().message.startswith("already 1 update(s) in the last hour")

    # Three failures in a row: safe mode; the device keeps running v2.
    at(clock, 183)
    assert agent.once().outcome == "rolled_back"
    at(clock, 244)
    assert agent.once().outcome == "rolled_back"
    state = agent.store.load()
    assert (state.mode, state.consecutive_failures) == ("safe_mode", 3)
    at(clock, 400)
    result = agent.once()
    assert result.outcome == "safe_mode"
    assert agent.store.commit_of(agent.store.current()) == v2
    assert bad not in (agent.store.commit_of(agent.store.current()) or "")


@pytest.mark.parametrize(
    ("extra", "role_interval", "expected"),
    [
        ("", None, 60.0),  # mains: the seed's 30-120 s
        ('power = "battery"', None, 1800.0),  # battery: the seed's 15-60 min
        ('power = "battery"', "10m", 600.0),  # the role's interval wins over the class
        ('power = "battery"\nupdate_interval = "45m"', "10m", 2700.0),  # the device's wins
    ],
    ids=["mains", "battery", "battery-role", "battery-device"],
)
def test_update_intervals_by_power_class(tmp_path, fleet_repo, extra, role_interval, expected):
    role = script_role("v1")
    if role_interval:  # a top-level key, before role.toml's first table
        role["roles/web/role.toml"] = (
            f'update_interval = "{role_interval}"\n' + role["roles/web/role.toml"]
        )
    fleet_repo.commit(role, "v1")
    clock = ManualClock(START)
    agent = defaults_agent(tmp_path, fleet_repo, clock, extra)
    agent.once()
    assert interval(agent) == expected


def test_a_battery_device_backs_off_during_an_outage(tmp_path, fleet_repo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    clock = ManualClock(START)
    agent = defaults_agent(tmp_path, fleet_repo, clock, 'power = "battery"')
    assert agent.once().outcome == "updated"
    fleet_repo.path.rename(tmp_path / "away")
    assert agent.once().outcome == "unreachable"
    # Right after the outage began: the retry back-off (2 s, jittered), not 30 min.
    assert 1.0 <= interval(agent) <= 2.0
    at(clock, 10)
    assert agent.once().outcome == "unreachable"
    # Ten minutes in: the back-off has grown to the outage's length, jittered.
    assert 300.0 <= interval(agent) <= 600.0
    at(clock, 20)
    assert agent.once().outcome == "unreachable"
    # Twenty minutes in: still the outage's length, jittered (under the 30 min class).
    assert 600.0 <= interval(agent) <= 1200.0
    at(clock, 130)
    assert agent.once().outcome == "unreachable"
    # Two hours: isolated, probed every `isolated_retry` (5 min by default).
    assert agent.store.load().network == "isolated"
    assert interval(agent) == 300.0
