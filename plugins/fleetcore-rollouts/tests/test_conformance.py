"""The rollout strategies of this package against fleetcore's kit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from fleetcore.plugin.types import RolloutStrategy
from fleetcore.testing.conformance.rollout import RolloutStrategyKit
from fleetcore_rollouts import canary, percentage


class TestPercentage(RolloutStrategyKit):
    @pytest.fixture
    def record(self) -> RolloutStrategy:
        (record,) = percentage.fleetcore_register_rollout_strategies()
        return record

    @pytest.fixture
    def steps(self) -> Sequence[Mapping[str, Any]]:
        return [{"percent": p} for p in (0, 1, 5, 25, 100)]

    @pytest.fixture
    def nobody(self) -> Mapping[str, Any]:
        return {"percent": 0}

    @pytest.fixture
    def everybody(self) -> Mapping[str, Any]:
        return {"percent": 100}


class TestCanary(RolloutStrategyKit):
    @pytest.fixture
    def record(self) -> RolloutStrategy:
        (record,) = canary.fleetcore_register_rollout_strategies()
        return record

    @pytest.fixture
    def steps(self) -> Sequence[Mapping[str, Any]]:
        return [
            {"segments": []},
            {"segments": ["canary"]},
            {"segments": ["canary", "early"]},
            {"segments": ["canary", "early", "general"]},
        ]

    @pytest.fixture
    def nobody(self) -> Mapping[str, Any]:
        return {"segments": []}

    @pytest.fixture
    def everybody(self) -> Mapping[str, Any]:
        return {"segments": ["canary", "early", "general"]}
