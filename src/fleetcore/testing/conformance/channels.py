"""The conformance kit of event channels (:class:`~fleetcore.plugin.types.EventChannel`).

Subclass :class:`EventChannelKit` and define the fixtures ``record`` and
``options`` (the channel's options, reaching a real broker or server of
its kind); ``unreachable_options`` (the same channel with nothing at the
other end) checks that a channel never blocks its host::

    class TestNatsChannel(EventChannelKit):
        @pytest.fixture
        def record(self):
            (record,) = plugin.fleetcore_register_event_channels()
            return record

        @pytest.fixture
        def options(self, nats_server):
            return {"url": nats_server.url}

        @pytest.fixture
        def unreachable_options(self, closed_port):
            return {"url": f"nats://127.0.0.1:{closed_port}"}

Events are only hints, so the kit never expects one published event to
arrive: it publishes until the subscribers answer (they connect in the
background), then checks that an event for one device wakes that device
and not another, that only :data:`~fleetcore.channels.interface.EVENT_NAMES`
are passed on to ``wake``, that ``close`` returns promptly, stops ``wake``
and leaves no thread behind, and that factories return at once and
``publish`` does not hang when the other end is down.

The events handed to ``publish`` are :class:`KitEvent` objects, with the
attributes of the server's events (``device_id``, ``name``, ``data``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, cast

import attrs
import pytest

from fleetcore.channels.interface import EVENT_NAMES, EventPublisher, EventSubscriber
from fleetcore.plugin.types import EventChannel
from fleetcore.testing.conformance import COMMIT, DEVICE, OTHER_DEVICE, fail, missing_fixture
from fleetcore.testing.contracts import check_summary, structure_options

__all__ = ["EventChannelKit", "KitEvent", "Woken", "check_event_channel_record"]


@attrs.frozen
class KitEvent:
    """An event as the server hands it to ``publish``."""

    device_id: str
    name: str
    data: dict[str, Any] = attrs.Factory(lambda: {"commit": COMMIT})


class Woken:
    """A ``wake`` callback that remembers what it was called with."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, name: str) -> None:
        with self.changed:
            self.names.append(name)
            self.changed.notify_all()

    def wait_for(self, name: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: name in self.names, timeout)


def check_event_channel_record(record: EventChannel, options: Mapping[str, Any] | Any) -> Any:
    """Check an :class:`~fleetcore.plugin.types.EventChannel` record; return
    its options structured from ``options``."""
    if not isinstance(record, EventChannel):
        fail(f"expected an EventChannel record, got {record!r}")
    check_summary(record)
    for scheme in record.schemes:
        if (
            not scheme
            or not all(c.isalnum() or c in "+-." for c in scheme)
            or scheme != scheme.lower()
        ):
            fail(f"{record.name}: schemes are lower-case URL schemes like 'mqtts', got {scheme!r}")
    for factory in ("publisher", "subscriber"):
        if not callable(getattr(record, factory)):
            fail(f"{record.name}: {factory} must be callable")
    return structure_options(record, options)


class _Opened:
    """Everything a test made, closed (once) at its end."""

    def __init__(self, record: EventChannel) -> None:
        self.record = record
        self.things: list[Any] = []
        self.closed: set[int] = set()

    def publisher(self, options: Any) -> EventPublisher:
        publisher = self.record.publisher(options)
        for method in ("publish", "close"):
            if not callable(getattr(publisher, method, None)):
                fail(f"{self.record.name}: the publisher has no {method}() method")
        self.things.append(publisher)
        return publisher

    def subscriber(self, options: Any, device_id: str) -> tuple[EventSubscriber, Woken]:
        woken = Woken()
        subscriber = self.record.subscriber(options, device_id, woken)
        for method in ("start", "close"):
            if not callable(getattr(subscriber, method, None)):
                fail(f"{self.record.name}: the subscriber has no {method}() method")
        self.things.append(subscriber)
        subscriber.start()
        return subscriber, woken

    def close(self, thing: Any) -> float:
        """Close ``thing``; how long it took."""
        started = time.monotonic()
        if id(thing) not in self.closed:
            self.closed.add(id(thing))
            thing.close()
        return time.monotonic() - started

    def close_all(self) -> None:
        for thing in reversed(self.things):
            self.close(thing)


class EventChannelKit:
    """Conformance tests for an event channel; see the module's documentation."""

    timeout: ClassVar[float] = 15.0
    """How long the kit waits for subscribers to answer."""
    prompt: ClassVar[float] = 5.0
    """How long a factory, ``publish`` or ``close`` may take."""

    # -- what a subclass supplies --------------------------------------------------------

    @pytest.fixture
    def record(self) -> EventChannel:
        missing_fixture(
            "EventChannelKit", "record", "the EventChannel record your plugin registers"
        )

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        missing_fixture(
            "EventChannelKit", "options", "the channel's options, reaching a real broker"
        )

    @pytest.fixture
    def unreachable_options(self) -> Mapping[str, Any] | None:
        """Options of the channel with nothing at the other end (None: no such case)."""
        return None

    # -- the kit's own fixtures --------------------------------------------------------

    @pytest.fixture
    def opened(self, record: EventChannel) -> Iterator[_Opened]:
        made = _Opened(record)
        yield made
        made.close_all()

    def _until_woken(
        self, record: EventChannel, publisher: EventPublisher, subscribers: Mapping[str, Woken]
    ) -> None:
        """Publish ``policy-changed`` to every device until each has heard one."""
        deadline = time.monotonic() + self.timeout
        while True:
            waiting = [d for d, w in subscribers.items() if "policy-changed" not in w.names]
            if not waiting:
                return
            if time.monotonic() > deadline:
                fail(
                    f"{record.name}: no event reached {', '.join(waiting)} within "
                    f"{self.timeout:g}s of publishing"
                )
            # publish may raise until the publisher is connected, by contract.
            with contextlib.suppress(Exception):
                _publish(publisher, *(KitEvent(d, "policy-changed") for d in waiting))
            for device in waiting:
                subscribers[device].wait_for("policy-changed", 0.2)

    # -- the tests ------------------------------------------------------------------------

    def test_record(self, record: EventChannel, options: Mapping[str, Any]) -> None:
        check_event_channel_record(record, options)

    def test_an_event_reaches_its_device_and_no_other(
        self, record: EventChannel, options: Mapping[str, Any], opened: _Opened
    ) -> None:
        structured = check_event_channel_record(record, options)
        _, mine = opened.subscriber(structured, DEVICE.device_id)
        _, other = opened.subscriber(structured, OTHER_DEVICE.device_id)
        publisher = opened.publisher(structured)
        self._until_woken(
            record, publisher, {DEVICE.device_id: mine, OTHER_DEVICE.device_id: other}
        )
        _publish(publisher, KitEvent(DEVICE.device_id, "update-available"))
        if not mine.wait_for("update-available", self.timeout):
            fail(f"{record.name}: an update-available event did not reach its device")
        time.sleep(0.3)  # what would reach the other device has had its time
        if "update-available" in other.names:
            fail(f"{record.name}: an event for {DEVICE.device_id} woke {OTHER_DEVICE.device_id}")

    def test_a_fleet_subscriber_hears_each_device_by_its_id(
        self, record: EventChannel, options: Mapping[str, Any], opened: _Opened
    ) -> None:
        if record.fleet_subscriber is None:
            return  # optional: the channel listens one device at a time
        structured = check_event_channel_record(record, options)
        heard: list[tuple[str, str]] = []
        everyone = record.fleet_subscriber(structured, lambda d, n: heard.append((d, n)))
        opened.things.append(everyone)
        everyone.start()
        publisher = opened.publisher(structured)
        deadline = time.monotonic() + self.timeout
        wanted = {(DEVICE.device_id, "policy-changed"), (OTHER_DEVICE.device_id, "policy-changed")}
        while not wanted <= set(heard):
            if time.monotonic() > deadline:
                fail(f"{record.name}: the fleet subscriber heard {sorted(set(heard))}")
            with contextlib.suppress(Exception):  # until the publisher is connected
                _publish(
                    publisher,
                    KitEvent(DEVICE.device_id, "policy-changed"),
                    KitEvent(OTHER_DEVICE.device_id, "policy-changed"),
                    KitEvent(DEVICE.device_id, "kit-not-an-event"),
                )
            time.sleep(0.2)
        unknown = sorted({n for _, n in heard} - set(EVENT_NAMES))
        if unknown:
            fail(f"{record.name}: the fleet subscriber passed on {unknown}")

    def test_only_known_events_wake_the_agent(
        self, record: EventChannel, options: Mapping[str, Any], opened: _Opened
    ) -> None:
        structured = check_event_channel_record(record, options)
        _, woken = opened.subscriber(structured, DEVICE.device_id)
        publisher = opened.publisher(structured)
        self._until_woken(record, publisher, {DEVICE.device_id: woken})
        _publish(
            publisher,
            KitEvent(DEVICE.device_id, "kit-not-an-event"),
            KitEvent(DEVICE.device_id, "update-available"),
        )
        if not woken.wait_for("update-available", self.timeout):
            fail(f"{record.name}: an update-available event did not reach its device")
        unknown = sorted(set(woken.names) - set(EVENT_NAMES))
        if unknown:
            fail(f"{record.name}: wake() was called with {unknown}; only {EVENT_NAMES} pass")

    def test_close_is_clean(
        self, record: EventChannel, options: Mapping[str, Any], opened: _Opened
    ) -> None:
        before = set(threading.enumerate())
        structured = check_event_channel_record(record, options)
        subscriber, woken = opened.subscriber(structured, DEVICE.device_id)
        publisher = opened.publisher(structured)
        self._until_woken(record, publisher, {DEVICE.device_id: woken})
        took = opened.close(subscriber)
        if took > self.prompt:
            fail(f"{record.name}: the subscriber's close() took {took:.1f}s")
        heard = len(woken.names)
        _publish(publisher, KitEvent(DEVICE.device_id, "update-available"))
        time.sleep(0.5)
        if len(woken.names) != heard:
            fail(f"{record.name}: wake() was called after the subscriber was closed")
        took = opened.close(publisher)
        if took > self.prompt:
            fail(f"{record.name}: the publisher's close() took {took:.1f}s")
        deadline = time.monotonic() + self.prompt
        while (left := set(threading.enumerate()) - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            names = ", ".join(sorted(t.name for t in left))
            fail(f"{record.name}: threads left running after close(): {names}")

    def test_nothing_blocks_when_the_other_end_is_down(
        self,
        record: EventChannel,
        unreachable_options: Mapping[str, Any] | None,
        opened: _Opened,
    ) -> None:
        if unreachable_options is None:
            pytest.skip(f"{record.name}: no unreachable_options given")
        structured = check_event_channel_record(record, unreachable_options)
        for what, make in (
            ("subscriber", lambda: opened.subscriber(structured, DEVICE.device_id)),
            ("publisher", lambda: opened.publisher(structured)),
        ):
            took = _timed(make)
            if took > self.prompt:
                fail(f"{record.name}: making (and starting) the {what} took {took:.1f}s")
        publisher = opened.things[-1]

        def publish() -> None:
            # publish may raise when the channel is down, by contract.
            with contextlib.suppress(Exception):
                _publish(publisher, KitEvent(DEVICE.device_id, "update-available"))

        took = _timed(publish)
        if took > self.prompt:
            fail(f"{record.name}: publish() took {took:.1f}s with the other end down")
        for thing in list(opened.things):
            took = opened.close(thing)
            if took > self.prompt:
                fail(f"{record.name}: close() took {took:.1f}s with the other end down")


def _publish(publisher: EventPublisher, *events: KitEvent) -> None:
    # KitEvent has what publishers may use of the server's events.
    publisher.publish(cast(Any, list(events)))


def _timed(call: Callable[[], Any]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started
