"""Group commit: many requests' writes in one transaction, on one thread.

Every device reports its status once a minute, so a big fleet sends
thousands of small writes a second. Each request still waits until the
transaction holding its write is committed (nothing is acknowledged before
it is in the database), but hundreds share one commit. A dedicated writer
thread takes whatever has queued up while it was busy: under load the
batches grow by themselves, and when the server is idle a lone report is
written at once, without waiting for company.

The hand-overs are the cheapest there are: a put on a ``SimpleQueue`` into
the thread, and one ``call_soon_threadsafe`` per batch back to the event
loop. (A worker-pool hop per batch cost as much as the write itself.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("fleetcore.server.groupcommit")

Pending = tuple[tuple[Any, ...], asyncio.Future[None]]
Write = Callable[[list[tuple[Any, ...]]], Sequence[BaseException | None]]
"""Writes a batch in one transaction and says, per item, None (written) or
the error that refused it; raising fails the whole batch."""


class GroupCommit:
    def __init__(self, write: Write, max_batch: int = 500, name: str = "group-commit") -> None:
        self.write = write
        self.max_batch = max_batch
        self.name = name
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    async def submit(self, *item: Any) -> None:
        """Queue ``item`` and return once its transaction is committed; raises
        what the writer said about this item."""
        loop = asyncio.get_running_loop()
        if self._thread is None:
            self._start(loop)
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((item, future))
        await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # Started by the first request: only then is the serving loop known.
        with self._start_lock:
            if self._thread is None:
                self._loop = loop
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            outcomes: Sequence[BaseException | None]
            try:
                outcomes = self.write([item for item, _ in batch])
            except Exception as exc:  # the whole transaction failed
                log.warning("%s: a batch of %d failed: %s", self.name, len(batch), exc)
                outcomes = [exc] * len(batch)
            self._settle_soon(batch, outcomes)

    def _settle_soon(self, batch: list[Pending], outcomes: Sequence[BaseException | None]) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        # The loop may close meanwhile: then nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, batch, outcomes)


def _settle(batch: list[Pending], outcomes: Sequence[BaseException | None]) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():  # the client went away and its request was cancelled
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
