"""The ``tcp-port`` check against fleetcore's check kit."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetcore.plugin.types import Check, CheckContext
from fleetcore.testing.conformance import check_context
from fleetcore.testing.conformance.checks import CheckKit
from fleetcore.testing.services import free_port
from fleetcore_example import plugin


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


class TestTcpPort(CheckKit):
    kind = "health"

    @pytest.fixture
    def record(self) -> Check:
        (record,) = plugin.fleetcore_register_health_checks()
        return record

    @pytest.fixture
    def options(self, listening_port: int) -> Mapping[str, Any]:
        return {"port": listening_port, "timeout": "2s"}

    @pytest.fixture
    def failing(self, record: Check, kit_release: Path) -> CheckContext:
        return check_context("health", kit_release, record=record, options={"port": free_port()})
