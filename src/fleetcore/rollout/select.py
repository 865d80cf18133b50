"""Picking a rollout strategy by name: one registry for the agent and the server.

Both sides must reach the same decision for the same device and commit, so
both build strategies here, from the same plugin records and with options
structured by the plugin's own type. Built strategies are cached by name and
options: the server asks thousands of devices against one rollout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fleetcore.plugin.manager import PluginManager
from fleetcore.rollout.interface import Strategy


class RolloutStrategies:
    """The installed rollout strategies, with options validated by their own types."""

    def __init__(self, pm: PluginManager) -> None:
        self.pm = pm
        self.registry = pm.registry("rollout strategy")
        self._cache: dict[tuple[str, str], Strategy] = {}

    def names(self) -> list[str]:
        return self.registry.names()

    def __contains__(self, name: object) -> bool:
        return name in self.registry

    def check(
        self,
        name: str,
        options: Mapping[str, Any],
        where: str = "options",
        *,
        name_where: str = "strategy",
        source: str = "rollout",
    ) -> Any:
        """The structured options; raises ConfigError naming the key (``name_where``
        for an unknown strategy, ``where`` for bad options) in ``source``."""
        record = self.registry.get(name, where=name_where, source=source)
        return self.pm.options(record, options, where=where, source=source)

    def get(
        self,
        name: str,
        options: Mapping[str, Any],
        where: str = "options",
        *,
        name_where: str = "strategy",
        source: str = "rollout",
    ) -> Strategy:
        """The strategy ``name`` built with ``options`` (cached)."""
        key = (name, json.dumps(options, sort_keys=True, default=str))
        strategy = self._cache.get(key)
        if strategy is None:
            record = self.registry.get(name, where=name_where, source=source)
            options_value = self.check(name, options, where, name_where=name_where, source=source)
            strategy = record.factory(options_value)
            self._cache[key] = strategy
        return strategy
