"""The agent's half: listen on the device's topic and wake the agent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fleetcore.channels.interface import EVENT_NAMES
from fleetcore_mqtt.connection import Connection, failed
from fleetcore_mqtt.options import MqttOptions, decode, topic

log = logging.getLogger("fleetcore.mqtt")

QOS = 1


class MqttSubscriber:
    def __init__(self, options: MqttOptions, device_id: str, wake: Callable[[str], None]) -> None:
        self.options = options
        self.topic = topic(options.topic_prefix, device_id)
        self.wake = wake
        # The device id in the client id lets a broker's logs (and ACLs on
        # client ids) tell devices apart.
        self.connection = Connection(
            options, f"fleetcore-device-{device_id}", "this device", self._subscribe
        )
        self.client = self.connection.client
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self) -> None:
        self.connection.start()

    def close(self) -> None:
        self.connection.stop()

    def _subscribe(self, client: Any) -> None:
        # A clean session forgets subscriptions: subscribe on every connect.
        client.subscribe(self.topic, qos=QOS)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, reasons: Any, _props: Any) -> None:
        if any(failed(r) for r in reasons):
            log.warning("the MQTT broker %s refused %s", self.options.label, self.topic)
        else:
            log.info("subscribed to %s on %s", self.topic, self.options.label)

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        event = decode(message.payload)
        if event is None:
            log.debug("ignoring a malformed message on %s: %.200r", message.topic, message.payload)
            return
        name, data = event
        if name not in EVENT_NAMES or self.connection.closing:
            log.debug("ignoring event %r on %s", name, message.topic)
            return
        log.info("mqtt event %s %s", name, data.get("commit") or "")
        self.wake(name)
