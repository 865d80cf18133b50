"""Wake-ups in waves (pacing.py): a promotion that moves thousands of
devices tells them at most ``--wake-rate`` a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from fleetcore.server.events import Event
from fleetcore.server.pacing import WakePacer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Sent:
    """What the pacer handed over, wave by wave, and from which thread."""

    def __init__(self) -> None:
        self.waves: list[list[Event]] = []
        self.threads: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, events: list[Event]) -> None:
        with self.lock:
            self.waves.append(events)
            self.threads.append(threading.current_thread().name)

    @property
    def devices(self) -> list[str]:
        with self.lock:
            return [e.device_id for wave in self.waves for e in wave]

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.devices) < count:
            assert time.monotonic() < deadline, f"{len(self.devices)} told, waited for {count}"
            time.sleep(0.01)


def _moved(count: int, kind: str = "update-available", start: int = 0) -> list[Event]:
    return [Event(f"d-{i:04}", kind, {"commit": "c1"}) for i in range(start, start + count)]


def _pacer(rate: int) -> tuple[WakePacer, Sent, Clock]:
    sent, clock = Sent(), Clock()
    return WakePacer(sent, rate, clock), sent, clock


def test_a_change_within_the_rate_is_told_at_once_in_the_callers_thread() -> None:
    pacer, sent, _ = _pacer(100)
    pacer.submit(_moved(100))
    assert sent.devices == [f"d-{i:04}" for i in range(100)]
    assert sent.threads == [threading.current_thread().name]
    assert pacer.waiting == 0


def test_rate_zero_tells_everyone_at_once() -> None:
    pacer, sent, _ = _pacer(0)
    pacer.submit(_moved(5000))
    assert len(sent.devices) == 5000 and len(sent.waves) == 1


def test_a_large_change_is_told_in_waves_as_time_allows() -> None:
    pacer, sent, clock = _pacer(100)
    try:
        pacer.submit(_moved(350))
        sent.wait_for(100)  # the first second's room goes at once
        time.sleep(0.3)  # ... and no more until time passes
        assert len(sent.devices) == 100 and pacer.waiting == 250
        clock.now = 0.5
        sent.wait_for(150)
        time.sleep(0.3)
        assert len(sent.devices) == 150
        clock.now = 10.0  # room never exceeds one second's worth
        sent.wait_for(250)
        time.sleep(0.3)
        assert len(sent.devices) == 250
        clock.now = 11.0
        sent.wait_for(350)
        # Oldest first, each device once.
        assert sent.devices == [f"d-{i:04}" for i in range(350)]
        assert set(sent.threads) == {"wake-pacer"}
        assert pacer.waiting == 0
    finally:
        pacer.close()


def test_a_waiting_device_keeps_its_place_and_gets_the_newest_news() -> None:
    pacer, sent, clock = _pacer(10)
    try:
        pacer.submit(_moved(30))
        sent.wait_for(10)
        # A second change moves d-0025 again, and two devices not yet waiting.
        newer = [Event("d-0025", "policy-changed", {"commit": "c2", "why": "pinned"})]
        pacer.submit(newer + _moved(2, start=30))
        assert pacer.waiting == 22
        clock.now = 3.0
        sent.wait_for(20)
        clock.now = 6.0
        sent.wait_for(30)
        clock.now = 9.0
        sent.wait_for(32)
        told = {e.device_id: e for wave in sent.waves for e in wave}
        assert len(sent.devices) == 32 == len(told)  # each device once
        assert sent.devices.index("d-0025") == 25  # in its old place
        assert told["d-0025"].name == "policy-changed"
        assert told["d-0025"].data == {"commit": "c2", "why": "pinned"}
    finally:
        pacer.close()


def test_while_devices_wait_a_small_change_waits_its_turn() -> None:
    # Otherwise a stream of small changes could keep the line from moving.
    pacer, sent, clock = _pacer(10)
    try:
        pacer.submit(_moved(15))
        sent.wait_for(10)
        clock.now = 0.1  # room for one: but five wait before it
        pacer.submit([Event("late", "update-available", {"commit": "c1"})])
        clock.now = 5.0
        sent.wait_for(16)
        assert sent.devices[-1] == "late"
    finally:
        pacer.close()


def test_closing_drops_what_waits_and_stops_the_thread() -> None:
    pacer, sent, _ = _pacer(10)
    pacer.submit(_moved(50))
    sent.wait_for(10)
    pacer.close()
    assert pacer.waiting == 0
    assert not any(t.name == "wake-pacer" and t.is_alive() for t in threading.enumerate())
    pacer.submit(_moved(5))  # after close: nothing, no error
    assert len(sent.devices) == 10


def test_a_promotion_through_the_api_tells_every_moved_device_once_at_the_rate(
    make_server: Callable[..., Any], repo: Any
) -> None:
    server = make_server(wake_rate=10)
    operator = server.token("operator")
    for i in range(25):
        server.enroll(f"w-{i:02}", "web")
    told: list[tuple[float, str]] = []
    publish = server.ctl.hub.publish

    def record(events: Any) -> None:
        events = list(events)
        told.extend((time.monotonic(), e.device_id) for e in events)
        publish(events)

    server.ctl.hub.publish = record
    head = repo.git("rev-parse", "HEAD")
    r = server.request(
        "POST",
        "/v1/rollouts",
        operator,
        json={"commit": head, "strategy": "percentage", "role": "web",
              "steps": [{"options": {"percent": 100}}]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 10
    while len(told) < 25:
        assert time.monotonic() < deadline, f"{len(told)} of 25 devices told"
        time.sleep(0.05)
    assert sorted(d for _, d in told) == [f"w-{i:02}" for i in range(25)]
    # Ten at once, then one per tenth of a second: the last 15 take 1.5 s.
    assert told[-1][0] - told[0][0] >= 1.2
    metrics = server.request("GET", "/metrics", operator).text
    assert "fleetcore_wakeups_waiting 0.0" in metrics
