"""The conformance kit of rollout strategies
(:class:`~fleetcore.plugin.types.RolloutStrategy`).

Subclass :class:`RolloutStrategyKit` and define the fixtures ``record`` and
``steps`` (the options at successive steps of one rollout, as TOML tables);
``nobody`` and ``everybody`` when some options let no device, or every
device, take a commit::

    class TestPercentage(RolloutStrategyKit):
        @pytest.fixture
        def record(self):
            (record,) = percentage.fleetcore_register_rollout_strategies()
            return record

        @pytest.fixture
        def steps(self):
            return [{"percent": p} for p in (0, 1, 5, 25, 100)]

        @pytest.fixture
        def nobody(self):
            return {"percent": 0}

        @pytest.fixture
        def everybody(self):
            return {"percent": 100}

It checks, over 300 devices of every segment and four commits, that the
strategy is a pure function of device, commit and options (the server and
the agent must agree), that it is monotone over the steps (a device never
moves back), that the steps do change something, and that ``nobody`` and
``everybody`` mean what they say. See
:func:`fleetcore.testing.contracts.check_rollout_strategy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from fleetcore.plugin.types import RolloutStrategy
from fleetcore.testing.conformance import fail, missing_fixture
from fleetcore.testing.contracts import (
    check_rollout_strategy,
    sample_commits,
    sample_devices,
    structure_options,
)

__all__ = ["RolloutStrategyKit"]


class RolloutStrategyKit:
    """Conformance tests for a rollout strategy; see the module's documentation."""

    @pytest.fixture
    def record(self) -> RolloutStrategy:
        missing_fixture(
            "RolloutStrategyKit", "record", "the RolloutStrategy record your plugin registers"
        )

    @pytest.fixture
    def steps(self) -> Sequence[Mapping[str, Any]]:
        missing_fixture(
            "RolloutStrategyKit", "steps", "options at successive steps of one rollout, in order"
        )

    @pytest.fixture
    def nobody(self) -> Mapping[str, Any] | None:
        """Options under which no device may take a commit (None: there are none)."""
        return None

    @pytest.fixture
    def everybody(self) -> Mapping[str, Any] | None:
        """Options under which every device may take a commit (None: there are none)."""
        return None

    def test_deterministic_and_monotone(
        self, record: RolloutStrategy, steps: Sequence[Mapping[str, Any]]
    ) -> None:
        counts = check_rollout_strategy(record, steps)
        if len(steps) > 1 and counts[-1] == counts[0]:
            fail(
                f"{record.name}: the steps {list(steps)} all let the same number of "
                "devices through; give steps that advance the rollout"
            )

    def test_nobody_and_everybody(
        self,
        record: RolloutStrategy,
        nobody: Mapping[str, Any] | None,
        everybody: Mapping[str, Any] | None,
    ) -> None:
        if nobody is None and everybody is None:
            pytest.skip(f"{record.name} has no options for nobody or everybody")
        devices, commits = sample_devices(), sample_commits()
        for options, want in ((nobody, False), (everybody, True)):
            if options is None:
                continue
            strategy = record.factory(structure_options(record, options))
            for device in devices:
                for commit in commits:
                    if strategy.eligible(device, commit) is not want:
                        fail(
                            f"{record.name}: with {dict(options)!r}, {device.device_id} "
                            f"(segment {device.segment}) "
                            f"{'may not' if want else 'may'} take {commit[:12]}"
                        )

    def test_ordering_of_devices_does_not_matter(
        self, record: RolloutStrategy, steps: Sequence[Mapping[str, Any]]
    ) -> None:
        # The server decides for a whole fleet, the agent for one device.
        devices, commits = sample_devices(60), sample_commits(2)
        for step in steps:
            options = structure_options(record, step)
            fleet = record.factory(options)
            together = [fleet.eligible(d, c) for c in commits for d in devices]
            alone = [record.factory(options).eligible(d, c) for c in commits for d in devices]
            if together != alone:
                fail(
                    f"{record.name}: with {dict(step)!r}, a strategy asked about one device "
                    "answers otherwise than one asked about the whole fleet"
                )
