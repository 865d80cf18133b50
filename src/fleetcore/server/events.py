"""Events to devices over Server-Sent Events.

Each connected stream is a small record (what waits to be sent, and the
future its sender sleeps on); the engine and request threads publish through
the event loop (``call_soon_threadsafe``). A device that is
not connected misses nothing that matters: events only wake it early, and
its next poll of ``/desired`` says the same thing.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict, deque
from collections.abc import Iterable
from typing import Any

from starlette.types import Message, Receive, Send

from fleetcore.model import Event

QUEUE_LIMIT = 100
EVERY_DEVICE = "*"
"""The device id of an event for every stream (fleet-wide policy)."""
CLOSE_STREAM = "close"
"""Not sent to the device: its streams end (its credential was revoked).
An event like the others, so the relay carries it to the replicas too."""


class _Stream:
    """One open stream: what waits to be sent, and the future its sender
    sleeps on. Kept small on purpose: an idle server holds thousands, and
    every full pass of the garbage collector visits each of their objects
    (at 10,000 streams of Starlette's StreamingResponse, over a second)."""

    __slots__ = ("pending", "waiter")

    def __init__(self) -> None:
        self.pending: deque[Event | None] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def wake(self, *_: Any) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class EventHub:
    def __init__(self, keepalive: float = 15.0, max_streams: int = 0) -> None:
        self.keepalive = keepalive
        self.max_streams = max_streams
        """Streams this server holds at most (0: no limit of its own). Each
        is a socket, and a process has only so many file descriptors: past
        them the server could not even accept a status report."""
        self.loop: asyncio.AbstractEventLoop | None = None
        self._streams: dict[str, set[_Stream]] = defaultdict(set)
        self._lock = threading.Lock()
        self.delivered = 0

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    @property
    def connected(self) -> int:
        with self._lock:
            return sum(len(q) for q in self._streams.values())

    def has_room(self) -> bool:
        return not self.max_streams or self.connected < self.max_streams

    def publish(self, events: Iterable[Event]) -> None:
        """Thread-safe; drops events for devices that are not connected."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        # One hand-over to the event loop for the whole batch: a change can
        # move thousands of devices, and each hand-over wakes the loop.
        with self._lock:
            deliveries: list[tuple[Event | None, list[_Stream]]] = []
            for event in events:
                if event.device_id == EVERY_DEVICE:
                    streams = [s for ss in self._streams.values() for s in ss]
                else:
                    streams = list(self._streams.get(event.device_id, ()))
                if streams:
                    deliveries.append((event, streams))
        if deliveries:
            loop.call_soon_threadsafe(self._put_all, deliveries)

    @staticmethod
    def _put_all(deliveries: list[tuple[Event | None, list[_Stream]]]) -> None:
        for event, streams in deliveries:
            # A stuck client must not grow memory forever; but it is still closed.
            always = event is None or event.name == CLOSE_STREAM
            for stream in streams:
                if always or len(stream.pending) < QUEUE_LIMIT:
                    stream.pending.append(event)
                    stream.wake()

    def close_all(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            streams = [s for ss in self._streams.values() for s in ss]
        stop: list[tuple[Event | None, list[_Stream]]] = [(None, streams)]
        loop.call_soon_threadsafe(self._put_all, stop)

    async def serve(self, device_id: str, receive: Receive, send: Send) -> None:
        """Send ``device_id``'s events as the body of a response whose head
        was sent, until the client leaves, the server stops or the device's
        credential is revoked."""
        loop = asyncio.get_running_loop()
        stream = _Stream()
        with self._lock:
            self._streams[device_id].add(stream)
        # The client leaving is seen only by reading: one small task does that.
        gone = loop.create_task(_disconnected(receive))
        gone.add_done_callback(stream.wake)
        try:
            # A first comment tells the client (and proxies) the stream is open.
            await send(_chunk(b": connected\n\n"))
            while not gone.done():
                if not stream.pending:
                    stream.waiter = loop.create_future()
                    timer = loop.call_later(self.keepalive, stream.wake)
                    try:
                        await stream.waiter
                    finally:
                        timer.cancel()
                        stream.waiter = None
                    if not stream.pending:
                        if not gone.done():
                            await send(_chunk(b": keep-alive\n\n"))
                        continue
                event = stream.pending.popleft()
                if event is None or event.name == CLOSE_STREAM:
                    break
                self.delivered += 1
                await send(_chunk(event.encode()))
        finally:
            left = gone.done()
            gone.cancel()
            with self._lock:
                self._streams[device_id].discard(stream)
                if not self._streams[device_id]:
                    del self._streams[device_id]
        if not left:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _chunk(data: bytes) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": True}


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
