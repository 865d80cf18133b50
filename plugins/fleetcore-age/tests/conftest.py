"""Fixtures of the age plugin's tests; the helpers are in fleetcore_age.testing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore_age.testing import Device


@pytest.fixture
def device(
    tmp_path: Path, fleet_repo: FleetRepo, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Device]:
    def make(device_id: str = "pi-001", role: str = "web", extra: str = "") -> Device:
        dev = Device(tmp_path / device_id, fleet_repo, device_id, role, extra)
        monkeypatch.setenv("FLEETCORE_TEST_OUT", str(dev.out))
        return dev

    return make
