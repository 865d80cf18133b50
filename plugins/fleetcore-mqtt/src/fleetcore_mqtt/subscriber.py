"""The agent's half: listen on the device's topic and wake the agent."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from fleetcore.channels.interface import EVENT_NAMES
from fleetcore_mqtt.connection import Connection, failed
from fleetcore_mqtt.options import MqttOptions, decode, device_of, every_device_topic, topic

log = logging.getLogger("fleetcore.mqtt")

QOS = 1


class _Listener:
    """One connection subscribed to ``topic_filter``, resubscribing on every
    connect (a clean session forgets subscriptions)."""

    def __init__(self, options: MqttOptions, topic_filter: str, client_id: str, who: str) -> None:
        self.options = options
        self.topic = topic_filter
        self.connection = Connection(options, client_id, who, self._subscribe)
        self.client = self.connection.client
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    def start(self) -> None:
        self.connection.start()

    def close(self) -> None:
        self.connection.stop()

    def _subscribe(self, client: Any) -> None:
        client.subscribe(self.topic, qos=QOS)

    def _on_subscribe(self, _c: Any, _u: Any, _mid: Any, reasons: Any, _props: Any) -> None:
        if any(failed(r) for r in reasons):
            log.warning("the MQTT broker %s refused %s", self.options.label, self.topic)
        else:
            log.info("subscribed to %s on %s", self.topic, self.options.label)

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        raise NotImplementedError


class MqttSubscriber(_Listener):
    def __init__(self, options: MqttOptions, device_id: str, wake: Callable[[str], None]) -> None:
        # The device id in the client id lets a broker's logs (and ACLs on
        # client ids) tell devices apart.
        super().__init__(
            options,
            topic(options.topic_prefix, device_id),
            f"fleetcore-device-{device_id}",
            "this device",
        )
        self.wake = wake

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


class MqttFleetSubscriber(_Listener):
    """Every device's events over one connection (a wildcard subscription):
    for programs that stand in for many devices, such as ``fleetcore simulate``
    or a site gateway. Needs a broker login allowed to read every device's topic."""

    def __init__(self, options: MqttOptions, wake: Callable[[str, str], None]) -> None:
        # A client id of its own: two of these on one broker must not take
        # each other's session.
        super().__init__(
            options,
            every_device_topic(options.topic_prefix),
            f"fleetcore-fleet-{secrets.token_hex(4)}",
            "the fleet",
        )
        self.wake = wake

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        device_id = device_of(self.options.topic_prefix, message.topic)
        event = decode(message.payload)
        if device_id is None or event is None or self.connection.closing:
            log.debug("ignoring a message on %s: %.200r", message.topic, message.payload)
            return
        name, _data = event
        if name in EVENT_NAMES:
            self.wake(device_id, name)
