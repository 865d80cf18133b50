"""The server's half: each event to its device's topic."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt

from fleetcore_mqtt.connection import Connection
from fleetcore_mqtt.options import MqttOptions, encode, topic

if TYPE_CHECKING:
    from fleetcore.channels.interface import Event

QOS = 1
MAX_QUEUED = 100_000
"""Messages paho holds for a slow broker before publish refuses more."""


class MqttPublisher:
    def __init__(self, options: MqttOptions) -> None:
        self.options = options
        # Unique per process: replicas of one server must not take each
        # other's connection (a broker drops the older of two equal ids).
        self.connection = Connection(
            options, f"fleetcore-server-{uuid.uuid4().hex[:12]}", "the server"
        )
        self.client = self.connection.client
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.connection.start()

    def publish(self, events: Sequence[Event]) -> None:
        # paho would queue QoS 1 messages while disconnected and send them
        # whenever the broker returns; events that stale only cost polls, so
        # they are refused instead and the server logs it.
        if not self.client.is_connected():
            raise ConnectionError(f"not connected to {self.options.label}")
        refused = 0
        for event in events:
            info = self.client.publish(
                topic(self.options.topic_prefix, event.device_id),
                encode(event.name, event.data),
                qos=QOS,
                retain=False,
            )
            refused += info.rc != mqtt.MQTT_ERR_SUCCESS
        if refused:
            raise ConnectionError(
                f"{refused} of {len(events)} events not sent to {self.options.label}"
            )

    def close(self) -> None:
        self.connection.stop()
