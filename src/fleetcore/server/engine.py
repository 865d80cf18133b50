"""The server's engine: every few seconds, blast-radius protection looks at
the failures of its window (and acts, see ``response.py``), then the
rollouts move on (``rollouts.tick``), holding while an incident is open."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fleetcore.server import rollouts
from fleetcore.server.context import Context
from fleetcore.server.response import respond

log = logging.getLogger("fleetcore.server.engine")


def tick(ctx: Context) -> None:
    try:
        hold = respond(ctx)
    except Exception:
        # Detection failing must not stop rollouts' own health gates.
        log.exception("blast-radius check failed")
        hold = False
    rollouts.tick(ctx, hold=hold)


async def run_engine(ctx: Context, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.to_thread(tick, ctx)
        except Exception:
            log.exception("engine tick failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
