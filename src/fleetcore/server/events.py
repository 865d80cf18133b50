"""Events to devices over Server-Sent Events.

Each connected stream has an asyncio queue; the engine and request threads
publish through the event loop (``call_soon_threadsafe``). A device that is
not connected misses nothing that matters: events only wake it early, and
its next poll of ``/desired`` says the same thing.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any

from attrs import frozen

QUEUE_LIMIT = 100
CLOSE_STREAM = "close"
"""Not sent to the device: its streams end (its credential was revoked).
An event like the others, so the relay carries it to the replicas too."""


@frozen
class Event:
    device_id: str
    name: str  # update-available | policy-changed | CLOSE_STREAM
    data: dict[str, Any]

    def encode(self) -> bytes:
        return f"event: {self.name}\ndata: {json.dumps(self.data)}\n\n".encode()


class EventHub:
    def __init__(self, keepalive: float = 15.0) -> None:
        self.keepalive = keepalive
        self.loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[str, set[asyncio.Queue[Event | None]]] = defaultdict(set)
        self._lock = threading.Lock()
        self.delivered = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    @property
    def connected(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._streams.values())

    def publish(self, events: Iterable[Event]) -> None:
        """Thread-safe; drops events for devices that are not connected."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        # One hand-over to the event loop for the whole batch: a fleet-wide
        # change is thousands of events, and each hand-over wakes the loop.
        with self._lock:
            deliveries = [
                (queue, event)
                for event in events
                for queue in self._streams.get(event.device_id, ())
            ]
        if deliveries:
            loop.call_soon_threadsafe(self._put_all, deliveries)

    @staticmethod
    def _put_all(deliveries: list[tuple[asyncio.Queue[Event | None], Event]]) -> None:
        for queue, event in deliveries:
            # A stuck client must not grow memory forever; but it is still closed.
            if queue.qsize() < QUEUE_LIMIT or event.name == CLOSE_STREAM:
                queue.put_nowait(event)

    def close_all(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            queues = [q for qs in self._streams.values() for q in qs]
        for queue in queues:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    async def stream(self, device_id: str) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        with self._lock:
            self._streams[device_id].add(queue)
        try:
            # A first comment tells the client (and proxies) the stream is open.
            yield b": connected\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), self.keepalive)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event is None or event.name == CLOSE_STREAM:
                    return
                self.delivered += 1
                yield event.encode()
        finally:
            with self._lock:
                self._streams[device_id].discard(queue)
                if not self._streams[device_id]:
                    del self._streams[device_id]
