"""One broker connection, set up the same way for both halves of the channel:
it connects in the background, reconnects by itself and logs each outage
once (a broker that is down for an hour must not fill the log)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from fleetcore_mqtt.options import MqttOptions

log = logging.getLogger("fleetcore.mqtt")

RECONNECT_MIN = 1
RECONNECT_MAX = 30
"""Seconds between reconnection attempts, doubling from the first to the last."""


class Connection:
    def __init__(
        self,
        options: MqttOptions,
        client_id: str,
        who: str,
        on_connected: Callable[[mqtt.Client], None] | None = None,
    ) -> None:
        self.options = options
        self.who = who
        self.on_connected = on_connected
        self.closing = False
        self._trouble = False
        self.client = _client(options, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect

    def start(self) -> None:
        # connect_async + loop_start: the loop thread keeps trying until the
        # broker answers, so a broker that is down now is picked up later.
        self.client.connect_async(
            self.options.host, self.options.port, keepalive=int(self.options.keepalive.seconds)
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.closing = True
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if failed(reason):
            self._warn(f"the MQTT broker {self.options.label} refused {self.who}: {reason}")
            return
        self._trouble = False
        log.info("connected to the MQTT broker %s", self.options.label)
        if self.on_connected is not None:
            self.on_connected(client)

    def _on_connect_fail(self, _c: Any, _u: Any) -> None:
        # paho does not say why: a wrong address, a firewall or TLS.
        self._warn(f"cannot connect to the MQTT broker {self.options.label}, retrying")

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not self.closing and failed(reason):
            self._warn(f"lost the MQTT broker {self.options.label} ({reason}), reconnecting")

    def _warn(self, message: str) -> None:
        if self._trouble:
            log.debug("%s", message)
        else:
            self._trouble = True
            log.warning("%s", message)


def _client(options: MqttOptions, client_id: str) -> mqtt.Client:
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    if options.username is not None:
        c.username_pw_set(options.username, options.secret())
    if options.tls:
        ca = str(options.ca_file) if options.ca_file is not None else None
        c.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.reconnect_delay_set(RECONNECT_MIN, RECONNECT_MAX)
    return c


def failed(reason: Any) -> bool:
    """Whether a paho reason code says no."""
    return bool(getattr(reason, "is_failure", reason))
