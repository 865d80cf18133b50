from __future__ import annotations

import pytest

from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import DeviceInfo
from fleetcore.testing.contracts import check_entry_point


@pytest.mark.parametrize("name", ["percentage", "canary"])
def test_registered_through_its_entry_point(name):
    info = check_entry_point(name, {"rollout strategy": [name]})
    assert info.distribution == "fleetcore-rollouts"
    assert info.hooks == ("fleetcore_register_rollout_strategies",)


def test_selected_by_name_with_options_as_the_core_does():
    pm = PluginManager()
    registry = pm.registry("rollout strategy")
    record = registry.get("canary", where="rollout.strategy", source="fleet.toml")
    options = pm.options(
        record, {"segments": ["canary", "early"]}, where="rollout", source="fleet.toml"
    )
    strategy = record.factory(options)
    assert strategy.eligible(DeviceInfo(device_id="a", role="web", segment="early"), "c0ffee")
    assert not strategy.eligible(DeviceInfo(device_id="a", role="web"), "c0ffee")
