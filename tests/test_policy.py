"""The desired-state precedence contract and the percentage hash contract."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from fleetcore.config.fleet import parse_device_policy, parse_fleet_policy
from fleetcore.plugin.types import DeviceInfo
from fleetcore.policy import percentage_bucket, resolve

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
HEAD = "h" * 40
DEVICE = DeviceInfo(device_id="pi-1", role="web", segment="canary")


def desired(fleet: str = "", device: str = "", eligible: bool = True, now: dt.datetime = NOW):
    return resolve(
        device=DEVICE,
        fleet=parse_fleet_policy(fleet.encode()),
        device_policy=parse_device_policy(device.encode(), "devices/pi-1.toml"),
        head=HEAD,
        now=now,
        eligible=lambda _n, _d, _c: eligible,
        override_head=lambda branch: f"{branch:s<40}"[:40],
    )


PIN = '[forced_version]\ncommit = "p"\nreason = "bad release"\nexpires = 2026-07-01T00:00:00Z\n'
LOCK = (
    '[version_lock]\ncommit = "l"\nreason = "demo"\nlocked_by = "ops@example.com"\n'
    "locked_until = 2026-07-01T00:00:00Z\n"
)


def test_maintenance_mode_beats_everything() -> None:
    d = desired(PIN, "auto_update = false\n" + LOCK)
    assert (d.commit, d.why) == (None, "maintenance")


def test_lock_beats_pin_and_names_who_locked() -> None:
    d = desired(PIN, LOCK)
    assert (d.commit, d.why) == ("l", "lock")
    assert "ops@example.com" in d.reason and "demo" in d.reason


def test_pin_beats_branch_override_and_rollout() -> None:
    d = desired(PIN + '[rollout]\nstrategy = "percentage"\npercent = 100\n', 'branch = "staging"\n')
    assert (d.commit, d.why) == ("p", "pin")


def test_expired_lock_and_pin_lapse() -> None:
    later = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)
    assert desired(PIN, LOCK, now=later).why == "rollout"


def test_branch_override_follows_its_branch_head() -> None:
    d = desired("", 'branch = "staging"\n')
    assert d.why == "override" and d.commit.startswith("staging")


def test_rollout_eligible_takes_head_else_stable_else_hold() -> None:
    rollout = '[rollout]\nstrategy = "percentage"\npercent = 10\n'
    assert (desired(rollout).commit, desired(rollout).why) == (HEAD, "rollout")
    assert desired(rollout + 'stable = "s"\n', eligible=False).commit == "s"
    held = desired(rollout, eligible=False)
    assert (held.commit, held.why) == (None, "hold")


def test_role_rollout_overrides_fleet_rollout() -> None:
    fleet = parse_fleet_policy(
        b'[rollout]\nstrategy = "percentage"\npercent = 5\n'
        b'[roles.web.rollout]\nstrategy = "canary"\nsegments = ["canary"]\n'
    )
    assert fleet.rollout_for("web").strategy == "canary"
    assert fleet.rollout_for("db").strategy == "percentage"


def test_percentage_bucket_is_the_documented_hash() -> None:
    for device_id, commit in [("pi-1", "abc"), ("camera-042", "f" * 40)]:
        expected = (
            int.from_bytes(hashlib.sha256((device_id + commit).encode()).digest()[:8], "big") % 100
        )
        assert percentage_bucket(device_id, commit) == expected


@pytest.mark.parametrize(
    ("when", "inside"),
    [
        (dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC), True),  # Sunday 03:00
        (dt.datetime(2026, 11, 29, 7, 0, tzinfo=dt.UTC), False),  # Sunday 07:00
        (dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.UTC), False),  # Monday 03:00
    ],
)
def test_maintenance_window(when: dt.datetime, inside: bool) -> None:
    policy = parse_device_policy(
        b'[maintenance_window]\ndays = ["sunday"]\nstart = "02:00"\nend = "06:00"\n', "d.toml"
    )
    assert policy.maintenance_window is not None
    assert policy.maintenance_window.contains(when) is inside


def test_window_past_midnight_belongs_to_its_start_day() -> None:
    policy = parse_device_policy(
        b'[maintenance_window]\ndays = ["saturday"]\nstart = "23:00"\nend = "02:00"\n', "d.toml"
    )
    window = policy.maintenance_window
    assert window is not None
    assert window.contains(dt.datetime(2026, 11, 28, 23, 30, tzinfo=dt.UTC))  # Saturday
    assert window.contains(dt.datetime(2026, 11, 29, 1, 30, tzinfo=dt.UTC))  # Sunday early
    assert not window.contains(dt.datetime(2026, 11, 29, 23, 30, tzinfo=dt.UTC))
