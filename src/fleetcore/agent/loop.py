"""``fleetcore agent run``: cycles forever, sleeping between them.

The interval is the agent's ``update_interval``, else the running role's,
else the power-class default (mains 60 s, battery 30 min). Sleeping is a
blocking wait, not polling: an idle agent uses no CPU. SIGHUP starts a cycle
at once (``systemctl reload fleetcore-agent``); SIGTERM and SIGINT finish
the current cycle and exit.
"""

from __future__ import annotations

import logging
import signal
from types import FrameType

from fleetcore.agent.update import Agent
from fleetcore.config.agent import DEFAULT_UPDATE_INTERVAL
from fleetcore.errors import FleetcoreError

log = logging.getLogger("fleetcore.agent")


def interval(agent: Agent) -> float:
    if agent.config.update_interval is not None:
        return agent.config.update_interval.seconds
    current = agent.store.current()
    if current is not None:
        role_interval = agent._role_config_of(current).update_interval
        if role_interval is not None:
            return role_interval.seconds
    return DEFAULT_UPDATE_INTERVAL[agent.config.power].seconds


def run_forever(agent: Agent, *, max_cycles: int | None = None) -> None:
    # Signal handlers only set flags and wake the sleep: logging from inside a
    # handler could interleave with a record being written.
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        agent.clock.wake()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)
    cycles = 0
    log.info("agent started for %s (%s)", agent.device.device_id, agent.device.role)
    while True:
        try:
            result = agent.once()
            log.info("%s: %s", result.outcome, result.message)
        except FleetcoreError as exc:
            # Bad config in the repo or a broken plugin must not kill the
            # loop: the device keeps running what it runs, and tries again.
            log.error("cycle failed: %s", exc)
        except Exception:
            log.exception("cycle crashed")
        cycles += 1
        if max_cycles is not None and cycles >= max_cycles:
            break
        if _stopping(received):
            break
        agent.clock.sleep(interval(agent))
        if _stopping(received):
            break
        if received:
            log.info("received SIGHUP, checking for updates now")
            received.clear()
    log.info("agent stopped")


def _stopping(received: list[int]) -> bool:
    stop = next((s for s in received if s in (signal.SIGTERM, signal.SIGINT)), None)
    if stop is not None:
        log.info("received %s, stopping", signal.Signals(stop).name)
        return True
    return False
