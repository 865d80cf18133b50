from __future__ import annotations

import pytest

from fleetcore.plugin.manager import PluginManager
from fleetcore.testing.contracts import check_entry_point

PLUGINS = {
    "script": {"activator": ["script"]},
    "validate-script": {"validate check": ["validate-script"]},
    "health-script": {"health check": ["health-script"]},
    "http": {"health check": ["http"]},
    "manifest": {"verify check": ["manifest"]},
    "signature": {"verify check": ["signature"]},
}


@pytest.mark.parametrize(("plugin", "provides"), PLUGINS.items())
def test_each_plugin_is_registered_through_its_entry_point(plugin, provides):
    info = check_entry_point(plugin, provides)
    assert info.distribution == "fleetcore-checks"
    assert dict(info.provides) == {kind: tuple(names) for kind, names in provides.items()}


def test_each_plugin_can_be_disabled_by_name():
    pm = PluginManager(disabled=["http", "script"])
    assert "http" not in pm.registry("health check")
    assert "health-script" in pm.registry("health check")
    assert "script" not in pm.registry("activator")
    statuses = {info.name: info.status for info in pm.plugins()}
    assert statuses["http"] == statuses["script"] == "disabled"
    assert statuses["manifest"] == "active"
