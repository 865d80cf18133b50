from __future__ import annotations

import hashlib

import pytest

from fleetcore.config.convert import structure
from fleetcore.config.fleet import parse_fleet_policy
from fleetcore.errors import ConfigError
from fleetcore.plugin.types import DeviceInfo
from fleetcore.testing.contracts import check_rollout_strategy, sample_commits, sample_devices
from fleetcore_rollouts import percentage
from fleetcore_rollouts.percentage import PercentageOptions, PercentageStrategy

COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"


def record():
    (rec,) = percentage.fleetcore_register_rollout_strategies()
    return rec


def strategy(percent: int) -> PercentageStrategy:
    return record().factory(PercentageOptions(percent=percent))


def devices(count: int = 1000) -> list[DeviceInfo]:
    return [DeviceInfo(device_id=f"rpi-{i:05d}", role="sensor") for i in range(count)]


def contract_bucket(device_id: str, commit: str) -> int:
    # Written out from the contract, not imported: a change of the hash in
    # the core must fail here, since devices and servers of different
    # versions must agree.
    return int.from_bytes(hashlib.sha256((device_id + commit).encode()).digest()[:8], "big") % 100


def test_keeps_the_rollout_contract():
    steps = [{"percent": p} for p in (0, 1, 5, 10, 25, 50, 99, 100)]
    counts = check_rollout_strategy(record(), steps)
    pairs = len(sample_devices()) * len(sample_commits())
    assert counts[0] == 0
    assert counts[-1] == pairs
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


def test_a_quarter_of_the_fleet_at_25_percent():
    s = strategy(25)
    share = sum(s.eligible(d, COMMIT) for d in devices())
    assert 220 <= share <= 280


@pytest.mark.parametrize("percent", [0, 1, 25, 50, 100])
def test_eligibility_is_exactly_the_policy_hash(percent):
    s = strategy(percent)
    for device in devices(300):
        expected = contract_bucket(device.device_id, COMMIT) < percent
        assert s.eligible(device, COMMIT) is expected


def test_monotone_in_percent():
    fleet = devices(500)
    previous: set[str] = set()
    for percent in range(101):
        s = strategy(percent)
        now = {d.device_id for d in fleet if s.eligible(d, COMMIT)}
        assert previous <= now, f"devices left the rollout when it grew to {percent}%"
        previous = now
    assert len(previous) == len(fleet)


def test_a_new_commit_picks_other_devices_first():
    s = strategy(10)
    first = {d.device_id for d in devices() if s.eligible(d, COMMIT)}
    second = {d.device_id for d in devices() if s.eligible(d, "1" * 40)}
    assert first and second and first != second


def test_segment_and_role_do_not_matter():
    s = strategy(50)
    for i in range(100):
        ids = f"dev-{i}"
        answers = {
            s.eligible(DeviceInfo(device_id=ids, role=role, segment=segment), COMMIT)
            for role in ("web", "gateway")
            for segment in ("canary", "general")
        }
        assert len(answers) == 1


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"percent": 150}, "percent must be between 0 and 100, got 150 @ rollout.percent"),
        ({"percent": -1}, "percent must be between 0 and 100, got -1 @ rollout.percent"),
        ({"percent": "25%"}, "expected a whole number, got '25%' @ rollout.percent"),
        ({}, "required key missing @ rollout.percent"),
        ({"percent": 5, "percentage": 5}, "unknown keys (percentage) @ rollout"),
    ],
)
def test_option_errors_name_the_key(table, problem):
    with pytest.raises(ConfigError) as caught:
        structure(table, PercentageOptions, source="fleet.toml", root="rollout")
    assert caught.value.problems == (problem,)
    assert str(caught.value) == f"fleet.toml: {problem}"


def test_options_from_fleet_toml():
    policy = parse_fleet_policy(b'[rollout]\nstrategy = "percentage"\npercent = 25\n')
    rollout = policy.rollout_for("web")
    assert rollout.strategy == "percentage"
    options = structure(rollout.options, PercentageOptions, source="fleet.toml", root="rollout")
    assert options == PercentageOptions(percent=25)
