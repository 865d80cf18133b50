from __future__ import annotations

import pytest

# pytester: the conformance kits are tested by running them on broken plugins.
pytest_plugins = ["fleetcore.testing.fixtures", "pytester"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With pytest-xdist (`make test` runs the suite on several workers), every
    test that drives the one Docker Engine runs on the same worker, one after
    the other: they share its images, and compose projects named after the
    device would meet each other."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if "docker_engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("docker"))
