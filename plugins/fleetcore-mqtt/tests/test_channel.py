"""The MQTT channel against a real mosquitto: the server's publisher, the
broker and a device's subscriber, as they run in production."""

from __future__ import annotations

import json
import logging
import time

import paho.mqtt.client as mqtt
import pytest

from fleetcore.testing.contracts import check_entry_point
from fleetcore.testing.mosquitto import Mosquitto
from fleetcore.testing.services import missing
from fleetcore_mqtt.options import decode, encode, topic

from .conftest import Channel, event, options, subscribed, until


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "fleetcore.mqtt")


def test_registered_through_its_entry_point() -> None:
    info = check_entry_point("mqtt", {"event channel": ["mqtt"]})
    assert info.distribution == "fleetcore-mqtt"


def test_an_event_wakes_its_device_and_no_other(mqtt_broker, channel: Channel, caplog) -> None:
    opts = options(mqtt_broker.url)
    _, pi1 = channel.subscriber(opts, "pi-1")
    _, pi2 = channel.subscriber(opts, "pi-2")
    assert subscribed(caplog, "pi-1") and subscribed(caplog, "pi-2")
    publisher = channel.publisher(opts)
    started = time.monotonic()
    publisher.publish([event("pi-1")])
    assert pi1.wait(1)
    print(f"\npublish to wake: {(time.monotonic() - started) * 1000:.1f} ms")
    # pi-2's own event comes after pi-1's: once it is there, pi-1's would be too.
    publisher.publish([event("pi-2", "policy-changed")])
    assert pi2.wait(1)
    assert pi1.names == ["update-available"]
    assert pi2.names == ["policy-changed"]


def test_messages_it_cannot_read_are_ignored(mqtt_broker, channel: Channel, caplog) -> None:
    opts = options(mqtt_broker.url)
    _, woken = channel.subscriber(opts, "pi-3")
    assert subscribed(caplog, "pi-3")
    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    raw.connect("127.0.0.1", opts.port)
    raw.loop_start()
    try:
        where = topic("fleetcore", "pi-3")
        for payload in (
            b"not json",
            b"\xff\xfe",
            b"[]",
            json.dumps({"event": 5}).encode(),
            json.dumps({"data": {}}).encode(),
            encode("reboot-now", {}),  # not an event fleetcore sends
            encode("policy-changed", {"why": "pin"}),
        ):
            raw.publish(where, payload, qos=1).wait_for_publish(5)
        assert woken.wait(1)
    finally:
        raw.disconnect()
        raw.loop_stop()
    time.sleep(0.2)
    assert woken.names == ["policy-changed"]
    ignored = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ignoring")]
    assert len(ignored) == 6


def test_the_device_wakes_again_after_the_broker_restarts(channel: Channel, caplog) -> None:
    broker = Mosquitto.start()
    if broker is None:
        missing("mosquitto (the MQTT broker)")
    try:
        opts = options(broker.url)
        _, woken = channel.subscriber(opts, "pi-4")
        assert subscribed(caplog, "pi-4")
        publisher = channel.publisher(opts)
        publisher.publish([event("pi-4")])
        assert woken.wait(1)
        broker.restart()
        assert subscribed(caplog, "pi-4", times=2), "the subscriber did not come back"
        # The publisher reconnects on its own schedule; until then it refuses.
        assert until(publisher.client.is_connected, 35)
        publisher.publish([event("pi-4", commit="beef")])
        assert woken.wait(2, timeout=5)
        assert woken.names == ["update-available", "update-available"]
        assert any("lost the MQTT broker" in r.getMessage() for r in caplog.records)
    finally:
        broker.stop()


def test_the_publisher_refuses_while_the_broker_is_down(channel: Channel) -> None:
    broker = Mosquitto.start()
    if broker is None:
        missing("mosquitto (the MQTT broker)")
    try:
        publisher = channel.publisher(options(broker.url))
        broker.halt()
        assert until(lambda: not publisher.client.is_connected())
        with pytest.raises(ConnectionError, match=r"not connected to mqtt://127\.0\.0\.1"):
            publisher.publish([event("pi-5")])
    finally:
        broker.stop()


def test_payloads_keep_the_documented_contract() -> None:
    assert topic("site-a/fleetcore", "pi-7") == "site-a/fleetcore/devices/pi-7/events"
    raw = encode("update-available", {"commit": "abc"})
    assert json.loads(raw) == {"event": "update-available", "data": {"commit": "abc"}}
    assert decode(raw) == ("update-available", {"commit": "abc"})
    assert decode(b'{"event": "policy-changed"}') == ("policy-changed", {})
    for bad in ("pi/1", "pi+", "#", ""):
        with pytest.raises(ValueError, match="cannot be part of an MQTT topic"):
            topic("fleetcore", bad)


def test_a_fleet_subscriber_hears_every_device_on_one_connection(
    mqtt_broker, channel: Channel, caplog
) -> None:
    from fleetcore_mqtt.plugin import fleet_subscriber

    opts = options(mqtt_broker.url)
    heard: list[tuple[str, str]] = []
    sub = fleet_subscriber(opts, lambda device_id, name: heard.append((device_id, name)))
    channel.opened.append(sub)
    sub.start()
    assert subscribed(caplog, "+")
    publisher = channel.publisher(opts)
    publisher.publish([event("pi-1"), event("pi-2", "policy-changed"), event("pi-3", "other")])
    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    raw.connect("127.0.0.1", opts.port)
    raw.loop_start()
    try:
        # Not a device's event topic, or not an event: ignored.
        raw.publish(
            "fleetcore/devices/pi-9/other", encode("update-available", {}), qos=1
        ).wait_for_publish()
        raw.publish(topic("fleetcore", "pi-9"), b"not json", qos=1).wait_for_publish()
        publisher.publish([event("pi-4")])
        assert until(lambda: ("pi-4", "update-available") in heard)
    finally:
        raw.loop_stop()
        raw.disconnect()
    assert heard == [
        ("pi-1", "update-available"),
        ("pi-2", "policy-changed"),
        ("pi-4", "update-available"),
    ]
