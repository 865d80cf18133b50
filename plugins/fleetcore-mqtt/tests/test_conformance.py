"""The MQTT channel against fleetcore's event-channel kit, on a real mosquitto."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from fleetcore.plugin.types import EventChannel
from fleetcore.testing.conformance.channels import EventChannelKit
from fleetcore.testing.services import free_port
from fleetcore_mqtt import plugin


class TestMqttChannel(EventChannelKit):
    @pytest.fixture
    def record(self) -> EventChannel:
        (record,) = plugin.fleetcore_register_event_channels()
        return record

    @pytest.fixture
    def options(self, mqtt_broker: Any) -> Mapping[str, Any]:
        return {"url": mqtt_broker.url}

    @pytest.fixture
    def unreachable_options(self) -> Mapping[str, Any]:
        return {"url": f"mqtt://127.0.0.1:{free_port()}"}
