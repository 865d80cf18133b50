"""A real broker and quick ways to watch a device being woken."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fleetcore.config.convert import structure
from fleetcore.server.events import Event
from fleetcore_mqtt.options import MqttOptions
from fleetcore_mqtt.publisher import MqttPublisher
from fleetcore_mqtt.subscriber import MqttSubscriber


class Woken:
    """The ``wake`` callback of one device: what it was woken with."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, name: str) -> None:
        with self.changed:
            self.names.append(name)
            self.changed.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.names) >= count, timeout)


def options(url: str, **more: Any) -> MqttOptions:
    return structure({"url": url, **more}, MqttOptions, source="test", root="events.mqtt")


def until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Channel:
    """Publishers and subscribers made in a test, all closed after it."""

    def __init__(self) -> None:
        self.opened: list[Any] = []

    def publisher(self, opts: MqttOptions) -> MqttPublisher:
        pub = MqttPublisher(opts)
        self.opened.append(pub)
        assert until(pub.client.is_connected), "the publisher did not connect"
        return pub

    def subscriber(self, opts: MqttOptions, device_id: str) -> tuple[MqttSubscriber, Woken]:
        woken = Woken()
        sub = MqttSubscriber(opts, device_id, woken)
        self.opened.append(sub)
        sub.start()
        return sub, woken


@pytest.fixture
def channel() -> Iterator[Channel]:
    made = Channel()
    yield made
    for thing in reversed(made.opened):
        thing.close()


def subscribed(
    caplog: pytest.LogCaptureFixture, device_id: str, times: int = 1, timeout: float = 10.0
) -> bool:
    """Whether the subscriber's subscription was acknowledged ``times`` times."""
    return until(
        lambda: (
            sum(
                f"subscribed to fleetcore/devices/{device_id}/events" in r.getMessage()
                for r in caplog.records
            )
            >= times
        ),
        timeout,
    )


def event(device_id: str, name: str = "update-available", commit: str = "c0ffee") -> Event:
    return Event(device_id, name, {"commit": commit})
