from __future__ import annotations

import pytest

from fleetcore.config.convert import structure
from fleetcore.errors import ConfigError
from fleetcore.plugin.types import DeviceInfo
from fleetcore.testing.contracts import check_rollout_strategy, sample_commits, sample_devices
from fleetcore_rollouts import canary
from fleetcore_rollouts.canary import CanaryOptions

COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"


def record():
    (rec,) = canary.fleetcore_register_rollout_strategies()
    return rec


def eligible_segments(segments: tuple[str, ...]) -> set[str]:
    s = record().factory(CanaryOptions(segments=segments))
    return {
        segment
        for segment in ("canary", "early", "general")
        if s.eligible(DeviceInfo(device_id=f"d-{segment}", role="web", segment=segment), COMMIT)
    }


def test_keeps_the_rollout_contract():
    steps = [
        {"segments": []},
        {"segments": ["canary"]},
        {"segments": ["canary", "early"]},
        {"segments": ["canary", "early", "general"]},
    ]
    counts = check_rollout_strategy(record(), steps)
    per_segment = len(sample_devices()) // 3 * len(sample_commits())
    assert counts == [0, per_segment, 2 * per_segment, 3 * per_segment]


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ((), set()),
        (("canary",), {"canary"}),
        (("canary", "early"), {"canary", "early"}),
        (("canary", "early", "general"), {"canary", "early", "general"}),
        (("early",), {"early"}),
    ],
)
def test_eligible_by_segment(segments, expected):
    assert eligible_segments(segments) == expected


def test_a_device_without_a_segment_is_general():
    s = record().factory(CanaryOptions(segments=("canary", "early")))
    assert not s.eligible(DeviceInfo(device_id="d", role="web"), COMMIT)
    s = record().factory(CanaryOptions(segments=("general",)))
    assert s.eligible(DeviceInfo(device_id="d", role="web"), COMMIT)


def test_a_new_rollout_starts_with_the_canaries():
    options = structure({}, CanaryOptions, source="fleet.toml")
    assert options.segments == ("canary",)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            {"segments": ["canary", "beta"]},
            "segments must be one of canary, early, general, got 'beta' @ rollout.segments",
        ),
        ({"segments": [1]}, "expected a string, got 1 @ rollout.segments[0]"),
        ({"segment": ["canary"]}, "unknown keys (segment) @ rollout"),
    ],
)
def test_option_errors_name_the_key(table, problem):
    with pytest.raises(ConfigError) as caught:
        structure(table, CanaryOptions, source="fleet.toml", root="rollout")
    assert caught.value.problems == (problem,)


def test_a_bare_string_is_refused_naming_the_key():
    with pytest.raises(ConfigError) as caught:
        structure({"segments": "canary"}, CanaryOptions, source="fleet.toml", root="rollout")
    (problem,) = caught.value.problems
    assert problem.endswith("@ rollout.segments")
