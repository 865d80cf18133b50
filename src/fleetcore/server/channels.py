"""Events to the event-channel plugins the server was started with (``--events``).

Each channel gets the server's events through a bounded queue and a thread of
its own: a request that moved devices hands its batch over and returns,
whatever the broker does. A channel that cannot send logs one warning per
outage, not one per event; events it could not send are dropped (devices
find out on their next poll).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Sequence

from fleetcore.channels.interface import EventPublisher
from fleetcore.server.events import Event

log = logging.getLogger("fleetcore.server.channels")

QUEUE_BATCHES = 1000
"""Batches waiting for a channel before new ones are dropped."""


class ChannelPump:
    def __init__(self, label: str, publisher: EventPublisher) -> None:
        self.label = label
        self.publisher = publisher
        self._queue: queue.Queue[list[Event] | None] = queue.Queue(QUEUE_BATCHES)
        self._failing = False
        self._dropping = False
        self.sent = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"events-{label}", daemon=True)
        self._thread.start()

    def submit(self, events: Sequence[Event]) -> None:
        """Hand a batch over; never blocks."""
        if not events:
            return
        try:
            self._queue.put_nowait(list(events))
            self._dropping = False
        except queue.Full:
            self.dropped += len(events)
            if not self._dropping:
                self._dropping = True
                log.warning("events over %s fall behind: dropping new ones", self.label)

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            # Whatever piled up meanwhile goes out in the same call.
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._send(batch)
                    return
                batch.extend(more)
            self._send(batch)

    def _send(self, batch: list[Event]) -> None:
        try:
            self.publisher.publish(batch)
        except Exception as exc:
            self.dropped += len(batch)
            if not self._failing:
                self._failing = True
                log.warning("cannot send events over %s: %s", self.label, exc)
            return
        self.sent += len(batch)
        if self._failing:
            self._failing = False
            log.info("sending events over %s again", self.label)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout``), then close the channel."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        try:
            self.publisher.close()
        except Exception as exc:
            log.warning("closing the events channel %s: %s", self.label, exc)
