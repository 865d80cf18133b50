"""Resource probes (``fleetcore_register_resource_probes``) feed the status
report's ``containers``: each built once, each isolated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetcore.agent.managed import status_report
from fleetcore.plugin import ContainerUsage, ResourceProbe, hookimpl
from fleetcore.plugin.manager import PluginManager
from fleetcore.testing.gitrepo import FleetRepo, script_role


class Counting:
    built = 0

    def __init__(self) -> None:
        Counting.built += 1
        self.calls = 0

    def containers(self, device: Any, project: str) -> list[ContainerUsage]:
        self.calls += 1
        return [
            ContainerUsage(name=f"{project}-app-1", cpu_percent=float(self.calls), restarts=2),
            ContainerUsage(name=f"{device.device_id}-db", memory_bytes=1024.0),
        ]


class Broken:
    def containers(self, device: Any, project: str) -> list[ContainerUsage]:
        raise RuntimeError("engine on fire")


class Probes:
    @hookimpl
    def fleetcore_register_resource_probes(self) -> list[ResourceProbe]:
        return [
            ResourceProbe(name="counting", summary="test", factory=Counting),
            ResourceProbe(name="broken", summary="test", factory=Broken),
        ]


def test_probes_fill_the_reports_containers(
    device: Callable[..., Any], fleet_repo: FleetRepo
) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    pm = PluginManager(entry_points=False)
    pm.register(Probes(), "probes")
    agent = device("pi-p").agent(pm)
    Counting.built = 0
    first = status_report(agent.ctx)
    second = status_report(agent.ctx)
    assert Counting.built == 1  # built once, asked before each report
    assert first["containers"][0] == {
        "name": "fleetcore-web-app-1",
        "cpu_percent": 1.0,
        "memory_bytes": None,
        "memory_limit_bytes": None,
        "restarts": 2,
    }
    assert [c["name"] for c in second["containers"]] == ["fleetcore-web-app-1", "pi-p-db"]
    assert second["containers"][0]["cpu_percent"] == 2.0  # the broken one is left out


def test_without_probes_the_report_has_no_containers(
    device: Callable[..., Any], fleet_repo: FleetRepo
) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    agent = device("pi-q").agent(PluginManager(entry_points=False))
    assert "containers" not in status_report(agent.ctx)
