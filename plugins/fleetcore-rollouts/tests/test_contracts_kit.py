"""The conformance kit must fail on strategies that break the contract:
otherwise the rollout tests that use it would prove nothing."""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest

from fleetcore.plugin.types import Check, DeviceInfo, RolloutStrategy
from fleetcore.policy import percentage_bucket
from fleetcore.testing.contracts import (
    check_check_record,
    check_entry_point,
    check_rollout_strategy,
    structure_options,
)
from fleetcore_rollouts.percentage import PercentageOptions


def strategy_record(eligible: Any, config_type: type = PercentageOptions) -> RolloutStrategy:
    class Strategy:
        def __init__(self, options: Any) -> None:
            self.options = options

        def eligible(self, device: DeviceInfo, commit: str) -> Any:
            return eligible(self.options, device, commit)

    return RolloutStrategy(
        name="under-test",
        summary="A strategy under test",
        factory=Strategy,
        config_type=config_type,
    )


STEPS = [{"percent": p} for p in (0, 10, 50, 100)]


def test_accepts_a_correct_strategy():
    record = strategy_record(lambda o, d, c: percentage_bucket(d.device_id, c) < o.percent)
    assert check_rollout_strategy(record, STEPS)[-1] > 0


def test_catches_a_non_monotone_strategy():
    # Eligible in a band of buckets that moves as the percentage grows.
    record = strategy_record(
        lambda o, d, c: o.percent - 10 <= percentage_bucket(d.device_id, c) < o.percent
    )
    with pytest.raises(AssertionError, match="not monotone"):
        check_rollout_strategy(record, STEPS)


def test_catches_a_strategy_that_changes_its_answer():
    counter = itertools.count()
    record = strategy_record(lambda o, d, c: next(counter) % 2 == 0)
    with pytest.raises(AssertionError, match="not deterministic"):
        check_rollout_strategy(record, STEPS)


def test_catches_strategies_that_depend_on_the_order_of_questions():
    class FirstTenAsked:
        """Deterministic for one object, but the server and the agent would disagree."""

        def __init__(self, options: Any) -> None:
            self.seen: list[str] = []

        def eligible(self, device: DeviceInfo, commit: str) -> bool:
            if device.device_id not in self.seen:
                self.seen.append(device.device_id)
            return self.seen.index(device.device_id) < 10

    record = RolloutStrategy(
        name="first-ten",
        summary="The first ten devices asked",
        factory=FirstTenAsked,
        config_type=PercentageOptions,
    )
    with pytest.raises(AssertionError, match="two strategies made from"):
        check_rollout_strategy(record, [{"percent": 10}])


def test_catches_an_answer_that_is_not_a_bool():
    record = strategy_record(lambda o, d, c: percentage_bucket(d.device_id, c))
    with pytest.raises(AssertionError, match="must return True or False"):
        check_rollout_strategy(record, STEPS)


def test_catches_example_options_the_config_loader_would_refuse():
    record = strategy_record(lambda o, d, c: True)
    with pytest.raises(AssertionError, match="percent must be between 0 and 100"):
        check_rollout_strategy(record, [{"percent": 150}])


def test_catches_options_that_are_not_frozen():
    @attrs.define(kw_only=True)
    class Mutable:
        percent: int = 0

    record = strategy_record(lambda o, d, c: True, config_type=Mutable)
    with pytest.raises(AssertionError, match="must be frozen"):
        structure_options(record, {"percent": 1})


def test_catches_options_that_are_not_attrs_classes():
    record = strategy_record(lambda o, d, c: True, config_type=dict)
    with pytest.raises(AssertionError, match="must be an attrs class"):
        structure_options(record, {})


def test_catches_a_check_with_a_multi_line_summary():
    check = Check(name="x", summary="First line.\nSecond line.", run=lambda ctx: None)
    with pytest.raises(AssertionError, match="one short line"):
        check_check_record(check)


def test_catches_a_check_whose_options_need_an_example():
    check = Check(
        name="x", summary="Needs a percent", run=lambda ctx: None, config_type=PercentageOptions
    )
    with pytest.raises(AssertionError, match="required key missing"):
        check_check_record(check)
    assert check_check_record(check, example={"percent": 3}) == PercentageOptions(percent=3)


def test_catches_a_plugin_that_is_not_installed():
    with pytest.raises(AssertionError, match="no plugin 'not-installed-anywhere'"):
        check_entry_point("not-installed-anywhere", {})
    with pytest.raises(AssertionError, match="does not provide rollout strategy linear"):
        check_entry_point("percentage", {"rollout strategy": ["linear"]})
