"""Registers the ``mqtt`` event channel (``mqtt://`` and ``mqtts://`` URLs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fleetcore.plugin import hookimpl
from fleetcore.plugin.types import EventChannel

if TYPE_CHECKING:
    from fleetcore_mqtt.options import MqttOptions


def publisher(options: MqttOptions) -> Any:
    # paho is imported only when a channel is built: the agent loads every
    # plugin on each run, and most runs never open a broker connection.
    from fleetcore_mqtt.publisher import MqttPublisher

    return MqttPublisher(options)


def subscriber(options: MqttOptions, device_id: str, wake: Callable[[str], None]) -> Any:
    from fleetcore_mqtt.subscriber import MqttSubscriber

    return MqttSubscriber(options, device_id, wake)


def fleet_subscriber(options: MqttOptions, wake: Callable[[str, str], None]) -> Any:
    from fleetcore_mqtt.subscriber import MqttFleetSubscriber

    return MqttFleetSubscriber(options, wake)


@hookimpl
def fleetcore_register_event_channels() -> Iterator[EventChannel]:
    # Imported here: the update cycle loads every plugin and needs no channel.
    from fleetcore_mqtt.options import MqttOptions

    yield EventChannel(
        name="mqtt",
        summary="Device events over an MQTT broker (QoS 1, one topic per device)",
        schemes=("mqtt", "mqtts"),
        config_type=MqttOptions,
        publisher=publisher,
        subscriber=subscriber,
        fleet_subscriber=fleet_subscriber,
    )
