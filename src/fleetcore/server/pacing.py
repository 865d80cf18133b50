"""Wake-ups in waves: at most ``rate`` devices told a second.

A promotion can move tens of thousands of devices, and every device told
asks at once for its desired state, computed in full. All of them in the
same second make a queue in front of the server in which the fleet's
ordinary status reports and polls wait too (measured at 10,000 devices:
6,463 requests over 5 s in one 10-second slice). The pacer hands the same
events over in waves of ``rate / 10`` every tenth of a second instead:
the same work, without the queue.

A change that moves no more devices than the waves have room for is told
at once, in the caller's thread; the rest wait in line, oldest first. A
device with a wake-up already waiting keeps its place and gets the newer
news. Waiting wake-ups are lost if the server stops: they only wake
devices early, and a device's next poll says the same thing.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence

from fleetcore.model import Event

WAVES_PER_SECOND = 10
DEFAULT_WAKE_RATE = 250
"""``server run``'s default: at 10,000 devices on two cores, 500 a second
still queued the devices' requests during a promotion and 250 did not
(docs/benchmarks.md)."""


class WakePacer:
    def __init__(
        self,
        send: Callable[[list[Event]], None],
        rate: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``send`` delivers one wave (in the caller's thread, or the
        pacer's); ``rate`` is devices a second, 0 for all at once."""
        self.send = send
        self.rate = rate
        self._clock = clock
        self._cond = threading.Condition()
        # Device id -> its newest wake-up; dicts keep insertion order, and
        # replacing a value keeps its place in line.
        self._waiting: dict[str, Event] = {}
        # A token bucket: room for one second of wake-ups, refilled at ``rate``.
        self._room = float(rate)
        self._filled_at = clock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        """Wake-ups in line (the ``fleetcore_wakeups_waiting`` gauge)."""
        with self._cond:
            return len(self._waiting)

    def submit(self, events: Sequence[Event]) -> None:
        """Tell these devices now if there is room, else in the next waves."""
        if not events:
            return
        if self.rate <= 0:
            self.send(list(events))
            return
        with self._cond:
            if self._closed:
                return
            self._refill()
            if not self._waiting and len(events) <= self._room:
                self._room -= len(events)
                now = list(events)
            else:
                now = []
                for event in events:
                    self._waiting[event.device_id] = event
                self._start()
                self._cond.notify()
        if now:
            self.send(now)

    def close(self) -> None:
        """Drop what waits (devices learn it on their next poll) and stop."""
        with self._cond:
            self._closed = True
            self._waiting.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(5)

    def _refill(self) -> None:
        now = self._clock()
        self._room = min(float(self.rate), self._room + (now - self._filled_at) * self.rate)
        self._filled_at = now

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wake-pacer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        tick = 1.0 / WAVES_PER_SECOND
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                self._refill()
                take = min(int(self._room), len(self._waiting))
                ids = list(itertools.islice(self._waiting, take))
                wave = [self._waiting.pop(device_id) for device_id in ids]
                self._room -= take
            if wave:
                self.send(wave)
            with self._cond:
                if self._waiting and not self._closed:
                    self._cond.wait(tick)
