"""The installed resource probes (``fleetcore_register_resource_probes``),
asked before each status report for the containers they see.

Each probe is built once per agent process (so it can keep its last
readings) and isolated: one that fails to build or raises is logged (once,
then at debug level) and left out; the others still report.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs

from fleetcore.activate.interface import project_name
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import ContainerUsage, DeviceInfo

log = logging.getLogger("fleetcore.agent")

MAX_CONTAINERS = 20
"""What the server takes in one report."""


class Probes:
    def __init__(self, pm: PluginManager, device: DeviceInfo) -> None:
        self.pm = pm
        self.device = device
        self._built: list[tuple[str, Any]] | None = None
        self._warned: set[str] = set()

    def _probes(self) -> list[tuple[str, Any]]:
        if self._built is None:
            self._built = []
            for record in self.pm.registry("resource probe"):
                try:
                    self._built.append((record.name, record.factory()))
                except Exception as exc:
                    self._warn(record.name, f"could not start: {exc}")
        return self._built

    def _warn(self, name: str, message: str) -> None:
        level = logging.DEBUG if name in self._warned else logging.WARNING
        self._warned.add(name)
        log.log(level, "resource probe %s %s", name, message)

    def containers(self) -> list[dict[str, Any]] | None:
        """The containers' figures for the report; None without any probe
        (the report then leaves ``containers`` out)."""
        probes = self._probes()
        if not probes:
            return None
        found: list[dict[str, Any]] = []
        for name, probe in probes:
            try:
                for usage in probe.containers(self.device, project_name(self.device)):
                    if isinstance(usage, ContainerUsage):
                        found.append(attrs.asdict(usage))
            except Exception as exc:
                self._warn(name, f"failed: {exc}")
        return found[:MAX_CONTAINERS]
