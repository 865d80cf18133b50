"""Time, behind one object, so tests can drive hours of agent life in seconds."""

from __future__ import annotations

import datetime as dt
import threading
import time


class Clock:
    """Wall-clock time for decisions, monotonic time for durations."""

    def __init__(self) -> None:
        self._wake = threading.Event()

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> bool:
        """Sleep, or return early (True) when :meth:`wake` is called."""
        woke = self._wake.wait(max(0.0, seconds))
        self._wake.clear()
        return woke

    def wake(self) -> None:
        self._wake.set()


class ManualClock(Clock):
    """A clock that moves only when told (or when slept on)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        super().__init__()
        self._now = start or dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
        self._mono = 1000.0

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds

    def sleep(self, seconds: float) -> bool:
        self.advance(max(0.0, seconds))
        return False
