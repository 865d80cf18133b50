"""``fleetcore agent run``: update cycles and drift checks, forever.

Update cycles run every ``update_interval`` (the agent's, else the running
role's, else the power-class default: mains 60 s, battery 30 min). When the
fleet repo does not answer, the next cycle comes sooner at first and later
the longer the outage lasts (the seed's partitions): exponential back-off
with jitter while the outage is short, every ``isolated_retry`` once
isolated, and only a cheap probe every ``airgapped_probe`` once airgapped.
Light drift checks run every ``[drift] light_interval``, deep ones every
``deep_interval``.

In managed mode the server's events (over its SSE stream, or the event
channel ``[server] events`` names) start a cycle at once; the cycle then asks
the server what to run, as a scheduled one does.

Sleeping is a blocking wait, not polling: an idle agent uses no CPU. SIGHUP
starts an update cycle at once (``systemctl reload fleetcore-agent``);
SIGTERM and SIGINT finish what runs and exit.

``fleetcore agent once`` run beside the service hands off to it (see
:mod:`fleetcore.agent.handoff`): its request starts a cycle at once, like
SIGHUP, and that cycle's result is sent back to it.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from fleetcore.agent.agent import Agent
from fleetcore.agent.handoff import Listener
from fleetcore.agent.releases import role_config_of
from fleetcore.channels.interface import EventSubscriber
from fleetcore.channels.select import SSE, agent_channel
from fleetcore.config.agent import DEFAULT_UPDATE_INTERVAL
from fleetcore.errors import FleetcoreError

log = logging.getLogger("fleetcore.agent")
SERVER_EVENT = -1
"""Marks a wake-up by the server's event stream among received signals."""
HANDOFF = -2
"""Marks a wake-up by ``fleetcore agent once`` handing off its cycle."""
CHECK_NOW = -3
"""Marks a server's ``check-now`` event: a deep drift check, not an update."""
SEND_LOGS = -4
"""Marks a server's ``send-logs`` event: upload the recent log lines."""
EVENT_MARKS = {"check-now": CHECK_NOW, "send-logs": SEND_LOGS}
WHY = {SERVER_EVENT: "a server event", HANDOFF: "`fleetcore agent once`"}


def interval(agent: Agent) -> float:
    """Seconds to the next update cycle, from the configuration and the network."""
    base = _update_interval(agent)
    state = agent.store.load() if agent.store.state_file.exists() else None
    if state is None or state.unreachable_since is None:
        return base
    partition = agent.config.partition
    if state.network == "airgapped":
        return partition.airgapped_probe.seconds
    if state.network == "isolated":
        return partition.isolated_retry.seconds
    # A short or medium outage: back off exponentially, with jitter so a fleet
    # that lost its network together does not come back in lockstep.
    outage = (agent.clock.now() - state.unreachable_since).total_seconds()
    backoff = max(agent.config.retry.backoff.seconds, outage)
    return min(base, backoff) * random.uniform(0.5, 1.0)  # noqa: S311


def _update_interval(agent: Agent) -> float:
    if agent.config.update_interval is not None:
        return agent.config.update_interval.seconds
    current = agent.store.current()
    if current is not None:
        role_interval = role_config_of(agent.store, current).update_interval
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

    def on_event(event: str) -> None:
        received.append(EVENT_MARKS.get(event, SERVER_EVENT))
        agent.clock.wake()

    def on_handoff() -> None:
        received.append(HANDOFF)
        agent.clock.wake()

    listener = _listen(agent, on_event)
    handoff = _handoff(agent, on_handoff)
    server = agent.config.server
    drift = agent.config.drift
    clock = agent.clock
    report_every = server.report_interval.seconds if server is not None else None
    next_report = clock.monotonic() + (report_every or 0)
    next_update = clock.monotonic()
    next_light = clock.monotonic() + drift.light_interval.seconds
    next_deep = clock.monotonic() + drift.deep_interval.seconds
    cycles = 0
    log.info("agent started for %s (%s)", agent.device.device_id, agent.device.role)
    while True:
        now = clock.monotonic()
        if now >= next_update:
            waiting = handoff.take() if handoff is not None else []
            reply = _cycle(agent)
            if waiting:
                Listener.answer(waiting, reply)
            cycles += 1
            next_update = clock.monotonic() + interval(agent)
        elif now >= next_deep:
            _guarded(lambda: _check(agent, deep=True))
            next_deep = clock.monotonic() + drift.deep_interval.seconds
            next_light = clock.monotonic() + drift.light_interval.seconds
        elif now >= next_light:
            _guarded(lambda: _check(agent, deep=False))
            next_light = clock.monotonic() + drift.light_interval.seconds
        if report_every is not None and clock.monotonic() >= next_report:
            agent.report()
            next_report = clock.monotonic() + report_every
        if max_cycles is not None and cycles >= max_cycles:
            break
        if _stopping(received):
            break
        due = [next_update, next_light, next_deep]
        if report_every is not None:
            due.append(next_report)
        wait = min(due) - clock.monotonic()
        if wait > 0:
            clock.sleep(wait)
        if _stopping(received):
            break
        if SEND_LOGS in received:
            while SEND_LOGS in received:
                received.remove(SEND_LOGS)
            _guarded(lambda: _send_logs(agent))
        if CHECK_NOW in received:
            received.remove(CHECK_NOW)
            log.info("asked by the server for a deep drift check")
            next_deep = clock.monotonic()
            # Its findings reach the server right after it.
            next_report = clock.monotonic()
        if received:
            why = next((WHY[r] for r in received if r in WHY), "SIGHUP")
            log.info("woken by %s, checking for updates now", why)
            received.clear()
            agent.fresh_desired = True
            next_update = clock.monotonic()
    if listener is not None:
        listener.close()
    if handoff is not None:
        handoff.close()
    log.info("agent stopped")


def _listen(agent: Agent, wake: Callable[[str], None]) -> EventSubscriber | None:
    """Start what ``[server] events`` selects: the server's SSE stream, an
    event-channel plugin's subscriber, or nothing."""
    server = agent.config.server
    if agent.client is None or server is None or server.events is None:
        return None
    if server.events == SSE:
        from fleetcore.agent.managed import EventListener

        sse = EventListener(agent.client, wake)
        sse.start()
        return sse
    try:
        selected = agent_channel(agent.pm, agent.config, agent.config_source)
        if selected is None:
            return None
        listener = selected.record.subscriber(selected.options, agent.device.device_id, wake)
        listener.start()
    except Exception as exc:
        # Events only make updates prompt: without them the device still
        # converges on its scheduled polls, so a broken channel must not stop
        # it. `fleetcore config check` reports what is wrong in agent.toml.
        log.error("no events over %s, scheduled polls only: %s", server.events, exc)
        return None
    log.info("listening for events over %s", selected.label)
    return listener


def _handoff(agent: Agent, wake: Callable[[], None]) -> Listener | None:
    """Listen for `fleetcore agent once` handing off its cycle."""
    agent.store.ensure()
    handoff = Listener(agent.config.state_dir, wake)
    return handoff if handoff.start() else None


def _cycle(agent: Agent) -> dict[str, Any]:
    """One update cycle, never raising; its result as ``agent once`` reports it."""
    try:
        result = agent.once()
    except FleetcoreError as exc:
        # Bad config in the repo or a broken plugin must not kill the loop:
        # the device keeps running what it runs, and tries again.
        log.error("cycle failed: %s", exc)
        return {"error": str(exc), "exit_code": exc.exit_code}
    except Exception as exc:
        log.exception("cycle crashed")
        return {"error": f"cycle crashed: {type(exc).__name__}: {exc}", "exit_code": 1}
    log.info("%s: %s", result.outcome, result.message)
    return {
        "outcome": result.outcome,
        "message": result.message,
        "commit": result.commit,
        "pending_commit": result.pending_commit,
        "exit_code": result.exit_code,
    }


def _send_logs(agent: Agent) -> None:
    from fleetcore.agent.logs import recent_lines

    if agent.client is None:
        return
    log.info("sending the recent log lines the server asked for")
    lines = [agent.ctx.redact(line) for line in recent_lines()]
    try:
        agent.client.send_logs(dt.datetime.now(dt.UTC).isoformat(), lines)
    except (FleetcoreError, OSError) as exc:
        log.warning("could not send the log lines: %s", exc)


def _check(agent: Agent, *, deep: bool) -> None:
    result = agent.check(deep=deep, fix=agent.config.drift.fix)
    if result.findings:
        log.info("%s drift check: %s", "deep" if deep else "light", result.verdict)


def _guarded(step: Callable[[], None]) -> None:
    try:
        step()
    except FleetcoreError as exc:
        # Bad config in the repo or a broken plugin must not kill the loop:
        # the device keeps running what it runs, and tries again.
        log.error("cycle failed: %s", exc)
    except Exception:
        log.exception("cycle crashed")


def _stopping(received: list[int]) -> bool:
    stop = next((s for s in received if s in (signal.SIGTERM, signal.SIGINT)), None)
    if stop is not None:
        log.info("received %s, stopping", signal.Signals(stop).name)
        return True
    return False
