"""Git-only policy from fleet.toml and devices/<id>.toml, end to end."""

from __future__ import annotations

import datetime as dt

from fleetcore.policy import percentage_bucket
from fleetcore.testing.gitrepo import FleetRepo, script_role


def test_fleet_pin_wins_over_the_rollout_until_it_expires(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    fleet_repo.commit(script_role("v2"), "v2")
    fleet_repo.commit(
        {
            "fleet.toml": f'[forced_version]\ncommit = "{v1}"\nreason = "v2 bricks '
            f'cameras"\nexpires = 2026-01-01T13:00:00Z\n'
        },
        "pin",
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("converged", v1)
    assert "v2 bricks cameras" in result.message
    dev.clock.advance(2 * 3600)  # the pin lapses by itself
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", fleet_repo.head())
    assert dev.running() == f"v2 {fleet_repo.head()}"


def test_device_lock_beats_the_pin_and_maintenance_mode_beats_all(device, fleet_repo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    v2 = fleet_repo.commit(script_role("v2"), "v2")
    fleet_repo.commit(
        {
            "fleet.toml": f'[forced_version]\ncommit = "{v2}"\n',
            "devices/pi-001.toml": f'[version_lock]\ncommit = "{v1}"\nreason = "demo"\n'
            f'locked_by = "ops@example.com"\n',
        },
        "pin v2, lock pi-001 on v1",
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("converged", v1)
    assert "ops@example.com" in result.message
    fleet_repo.commit({"devices/pi-001.toml": "auto_update = false\n"}, "maintenance")
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("converged", v1)
    assert "auto_update is off" in result.message


def test_branch_override_follows_staging(device, fleet_repo: FleetRepo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    staging = fleet_repo.commit(script_role("staging"), "try on staging", branch="staging")
    fleet_repo.checkout("main")
    fleet_repo.commit({"devices/pi-001.toml": 'branch = "staging"\n'}, "pi-001 follows staging")
    dev = device()
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", staging)
    assert dev.running() == f"staging {staging}"


def test_percentage_rollout_takes_exactly_the_eligible_devices(device, fleet_repo) -> None:
    stable = fleet_repo.commit(script_role("v1"), "v1")
    head = fleet_repo.commit(
        {
            **script_role("v2"),
            "fleet.toml": '[rollout]\nstrategy = "percentage"\npercent = 30\n'
            f'stable = "{stable}"\n',
        },
        "v2 to 30%",
    )
    results = {}
    for n in range(8):
        name = f"pi-{n:03}"
        dev = device(name)
        results[name] = dev.agent().once().commit
    expected = {name: head if percentage_bucket(name, head) < 30 else stable for name in results}
    assert results == expected
    assert len(set(results.values())) == 2  # this set of ids lands on both sides


def test_canary_segments(device, fleet_repo: FleetRepo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    head = fleet_repo.commit(
        {
            **script_role("v2"),
            "fleet.toml": '[roles.web.rollout]\nstrategy = "canary"\nsegments = ["canary"]\n',
        },
        "v2 to canaries",
    )
    canary = device("pi-canary", segment="canary").agent().once()
    general = device("pi-general", segment="general").agent().once()
    assert (canary.outcome, canary.commit) == ("updated", head)
    assert (general.outcome, general.commit) == ("deferred", None)  # holds: no stable given


def test_reboot_updates_wait_for_the_maintenance_window(device, fleet_repo: FleetRepo) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    v2 = fleet_repo.commit(
        {
            **script_role(
                "v2",
                extra={"roles/web/role.toml": 'requires_reboot = true\n[health]\nsettle = "0s"\n'},
            ),
            "devices/pi-001.toml": '[maintenance_window]\ndays = ["sunday"]\nstart = "02:00"\n'
            'end = "06:00"\n',
        },
        "v2 needs a reboot",
    )
    dev.clock._now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)  # a Friday
    result = dev.agent().once()
    assert (result.outcome, result.pending_commit) == ("deferred", v2)
    assert "maintenance window" in result.message
    dev.clock._now = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)  # Sunday 03:00
    assert dev.agent().once().commit == v2


def test_a_broken_fleet_toml_changes_nothing(device, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    dev = device()
    dev.agent().once()
    fleet_repo.commit({**script_role("v2"), "fleet.toml": "[rollout\n"}, "typo")
    import pytest

    from fleetcore.errors import ConfigError

    with pytest.raises(ConfigError, match=r"fleet.toml@[0-9a-f]{12}: not valid TOML"):
        dev.agent().once()
    assert dev.running() == f"v1 {v1}"
