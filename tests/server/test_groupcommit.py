"""Group commit: requests wait for their own transaction, and share it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from fleetcore.server.groupcommit import GroupCommit


class SlowWriter:
    """Records each batch; takes a while, so that requests pile up meanwhile."""

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.batches: list[list[Any]] = []
        self.committed: set[Any] = set()
        self.lock = threading.Lock()

    def __call__(self, batch: list[tuple[Any, ...]]) -> list[BaseException | None]:
        time.sleep(self.delay)
        outcomes: list[BaseException | None] = []
        for (value,) in batch:
            if value == "boom":
                raise OSError("disk I/O error")
            if isinstance(value, int) and value < 0:
                outcomes.append(ValueError(f"refused {value}"))
                continue
            outcomes.append(None)
            with self.lock:
                self.committed.add(value)
        self.batches.append([v for (v,) in batch])
        return outcomes


def test_concurrent_requests_share_commits_and_each_waits_for_its_own() -> None:
    writer = SlowWriter()
    group = GroupCommit(writer)

    async def main() -> None:
        async def one(i: int) -> None:
            await group.submit(i)
            # Acknowledged only once its transaction is committed.
            assert i in writer.committed

        await asyncio.gather(*(one(i) for i in range(200)))

    asyncio.run(main())
    group.close()
    assert sorted(v for batch in writer.batches for v in batch) == list(range(200))
    # 200 requests, far fewer transactions: the ones that arrived while a
    # commit ran went into the next one.
    assert len(writer.batches) < 20


def test_a_refused_item_fails_alone() -> None:
    writer = SlowWriter(delay=0.0)
    group = GroupCommit(writer)

    async def main() -> list[Any]:
        return await asyncio.gather(*(group.submit(i) for i in (1, -2, 3)), return_exceptions=True)

    results = asyncio.run(main())
    group.close()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ValueError) and "refused -2" in str(results[1])
    assert writer.committed == {1, 3}


def test_a_failed_transaction_fails_every_request_in_it_and_the_writer_goes_on() -> None:
    writer = SlowWriter(delay=0.0)
    group = GroupCommit(writer, max_batch=2)

    async def main() -> None:
        with pytest.raises(OSError, match="disk I/O error"):
            await group.submit("boom")
        await group.submit(7)  # the next batch is written as usual

    asyncio.run(main())
    group.close()
    assert writer.committed == {7}


def test_close_writes_what_is_queued_before_stopping() -> None:
    writer = SlowWriter(delay=0.05)
    group = GroupCommit(writer)

    async def main() -> None:
        tasks = [asyncio.ensure_future(group.submit(i)) for i in range(5)]
        await asyncio.sleep(0.01)  # queued, not yet committed
        await asyncio.to_thread(group.close)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert writer.committed == set(range(5))
