"""Retries of network steps: exponential back-off with jitter, one try per
cycle while the device is cut off from its fleet repo."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TypeVar

from fleetcore.agent.context import AgentContext
from fleetcore.errors import FetchError

log = logging.getLogger("fleetcore.agent")
T = TypeVar("T")


def retry(ctx: AgentContext, what: str, fn: Callable[[], T]) -> T:
    """``fn()``, tried again on a FetchError as ``[retry]`` allows."""
    settings = ctx.config.retry
    delay = settings.backoff.seconds
    # Cut off from the repo for a while: one try per cycle; the loop
    # spaces the cycles out (the seed's partition handling).
    attempts = settings.attempts if ctx.network == "online" else 1
    for attempt in range(1, max(1, attempts) + 1):
        try:
            return fn()
        except FetchError as exc:
            if attempt >= attempts:
                raise
            # Jitter: a fleet that lost its network together must not
            # come back in lockstep.
            wait = min(delay, settings.max_backoff.seconds) * random.uniform(0.5, 1.0)  # noqa: S311
            log.warning(
                "could not %s (attempt %d of %d), retrying in %.1fs: %s",
                what,
                attempt,
                settings.attempts,
                wait,
                exc,
            )
            ctx.clock.sleep(wait)
            delay *= 2
    raise AssertionError("unreachable")
