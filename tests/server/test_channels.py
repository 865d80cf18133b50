"""Event channels in the server: every batch reaches each channel given with
``--events``, and a channel that is slow or down never holds up a request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from attrs import frozen

from fleetcore.channels.select import server_channels
from fleetcore.errors import ConfigError, PluginError
from fleetcore.plugin import hookimpl
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import EventChannel
from fleetcore.server.channels import QUEUE_BATCHES, ChannelPump
from fleetcore.server.events import Event


@frozen(kw_only=True)
class RecordOptions:
    url: str = ""
    tag: str = ""


class Recorder:
    """A publisher that keeps what it was given; ``gate`` holds it up."""

    def __init__(self, options: Any = None) -> None:
        self.options = options
        self.events: list[Event] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        """Set once publish() has been called (and may be held at the gate)."""
        self.failures = 0
        self.closed = False

    def publish(self, events: Sequence[Event]) -> None:
        self.entered.set()
        self.gate.wait(30)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker down")
        self.events.extend(events)

    def close(self) -> None:
        self.closed = True


class RecordingChannel:
    def __init__(self) -> None:
        self.publishers: list[Recorder] = []

    def make(self, options: Any) -> Recorder:
        self.publishers.append(Recorder(options))
        return self.publishers[-1]

    @hookimpl
    def fleetcore_register_event_channels(self) -> Any:
        yield EventChannel(
            name="rec",
            summary="Records events",
            schemes=("rec", "recs"),
            config_type=RecordOptions,
            publisher=self.make,
            subscriber=lambda options, device_id, wake: None,
        )


def manager(channel: RecordingChannel | None = None) -> PluginManager:
    pm = PluginManager(entry_points=False)
    pm.register(channel or RecordingChannel(), name="recording")
    return pm


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_server_hands_every_batch_to_its_channels(make_server: Any, repo: Any) -> None:
    channel = RecordingChannel()
    server = make_server(pm=manager(channel), events=("recs://broker:1?tag=a", "rec"))
    admin = server.token("admin")
    server.enroll("pi-1")
    server.enroll("pi-2")
    r = server.request("PUT", "/v1/fleet/pin", admin, json={"commit": repo.head(), "reason": "x"})
    assert r.status_code == 200
    first, second = channel.publishers
    assert first.options == RecordOptions(url="recs://broker:1", tag="a")
    assert second.options == RecordOptions()
    for publisher in channel.publishers:
        assert wait_for(lambda p=publisher: len(p.events) == 2)
        assert {(e.device_id, e.name) for e in publisher.events} == {
            ("pi-1", "policy-changed"),
            ("pi-2", "policy-changed"),
        }
    assert wait_for(lambda: all(c.sent == 2 for c in server.ctl.channels))
    metrics = server.request("GET", "/metrics").text
    assert 'fleetcore_channel_events_total{channel="recs://broker:1",result="sent"} 2' in metrics
    assert 'fleetcore_channel_events_total{channel="rec",result="dropped"} 0' in metrics
    server.stop()
    assert first.closed and second.closed


def test_a_stuck_channel_never_holds_up_a_request(
    make_server: Any, repo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    channel = RecordingChannel()
    server = make_server(pm=manager(channel), events=("rec",))
    [stuck] = channel.publishers
    stuck.gate.clear()
    admin = server.token("admin")
    server.enroll("pi-1")
    started = time.monotonic()
    for _ in range(3):
        r = server.request("PUT", "/v1/fleet/pin", admin, json={"commit": repo.head()})
        assert r.status_code == 200
    assert time.monotonic() - started < 5  # the broker would hold each for 30 s
    stuck.gate.set()
    assert wait_for(lambda: len(stuck.events) == 3)


def test_a_full_queue_drops_events_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    publisher = Recorder()
    publisher.gate.clear()
    pump = ChannelPump("rec://x", publisher)
    event = Event("pi-1", "update-available", {"commit": "c"})
    # The channel's thread takes a first batch and is held in publish(): from
    # then on the queue fills up, and nothing drains it behind the test's back.
    pump.submit([event])
    assert publisher.entered.wait(5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "fleetcore.server.channels"):
        for _ in range(QUEUE_BATCHES + 49):
            pump.submit([event])
    assert time.monotonic() - started < 1
    assert pump.dropped == 49
    assert [r.getMessage() for r in caplog.records] == [
        "events over rec://x fall behind: dropping new ones"
    ]
    publisher.gate.set()
    pump.close()
    assert publisher.closed and len(publisher.events) == 1 + QUEUE_BATCHES


def test_a_channel_that_is_down_logs_one_warning_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = Recorder()
    publisher.failures = 3
    pump = ChannelPump("rec://x", publisher)
    with caplog.at_level(logging.INFO, "fleetcore.server.channels"):
        for index in range(4):
            pump.submit([Event(f"pi-{index}", "policy-changed", {})])
            time.sleep(0.05)  # one batch per publish call
        assert wait_for(lambda: publisher.events)
    pump.close()
    assert [e.device_id for e in publisher.events] == ["pi-3"]
    assert [r.getMessage() for r in caplog.records] == [
        "cannot send events over rec://x: broker down",
        "sending events over rec://x again",
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "nats://broker:4222",
            "unknown event channel 'nats://'; installed: rec (rec://, recs://) "
            "(sse is always served); see `fleetcore plugins`",
        ),
        (
            "nats",
            "unknown event channel 'nats'; installed: rec (rec://, recs://) "
            "(sse is always served); see `fleetcore plugins`",
        ),
        ("rec://x?tga=1", "unknown keys (tga) @ rec"),
        ("rec://x?tag=1&tag=2", "tag given twice @ rec.tag"),
    ],
)
def test_events_values_that_name_no_channel(value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        server_channels(manager(), ["rec://ok", value])
    assert caught.value.problems == (problem,)


def test_two_channels_claiming_one_scheme_are_named() -> None:
    class Rival:
        @hookimpl
        def fleetcore_register_event_channels(self) -> Any:
            yield EventChannel(
                name="rival",
                summary="Also wants recs://",
                schemes=("recs",),
                publisher=lambda options: None,
                subscriber=lambda options, device_id, wake: None,
            )

    pm = manager()
    pm.register(Rival(), name="rival-plugin")
    with pytest.raises(
        PluginError, match=r"recs:// is claimed by event channels rec \(recording\)"
    ):
        server_channels(pm, ["recs://x"])


def test_without_plugins_only_sse_is_there() -> None:
    with pytest.raises(ConfigError) as caught:
        server_channels(PluginManager(entry_points=False), ["mqtt://broker"])
    assert "installed: none (sse is always served)" in caught.value.problems[0]
