"""When a virtual device is there, and how it hears the server's events."""

from __future__ import annotations

import asyncio

from fleetcore.channels.interface import EVENT_NAMES
from fleetcore.simulate.device import VirtualDevice
from fleetcore.simulate.wire import WireError, event_stream


async def come_and_go(device: VirtualDevice) -> None:
    """``offline`` devices go silent for good at a random moment in the first
    half of the run; ``flap`` devices are silent for one to three report
    intervals at a time."""
    sim, rng = device.sim, device.rng
    plan = sim.plan
    if device.spec.behaviour == "offline":
        await sim.sleep(rng.uniform(0, (plan.duration or 600.0) / 2))
        device.silent = True
        return
    while not sim.stopping.is_set():
        await sim.sleep(rng.uniform(1, 3) * plan.report_interval)
        device.silent = True
        await sim.sleep(rng.uniform(1, 3) * plan.report_interval)
        device.silent = False
        device.wake.set()


async def listen_sse(device: VirtualDevice) -> None:
    """The device's server-sent event stream, reconnected when it drops."""
    sim = device.sim
    backoff = 1.0
    while not sim.stopping.is_set():
        if device.silent:
            await sim.sleep(1.0)
            continue
        try:
            async for event, _data in event_stream(
                sim.endpoint, f"{device.path}/events", device.auth()
            ):
                backoff = 1.0
                if event in EVENT_NAMES:
                    sim.stats.events_received += 1
                    device.wake.set()
                if device.silent or sim.stopping.is_set():
                    break
            else:
                if not sim.stopping.is_set():
                    sim.count_error("events: stream closed by the server")
        except (WireError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            sim.count_error("events: stream failed", exc)
        await sim.sleep(backoff * device.rng.uniform(1, 2))
        backoff = min(backoff * 2, 30.0)


def woken_by_channel(device: VirtualDevice, name: str) -> None:
    """Called in the event loop when an event channel plugin wakes the device."""
    if name in EVENT_NAMES and not device.silent:
        device.sim.stats.events_received += 1
        device.wake.set()
