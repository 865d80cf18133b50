"""Alerts to the alert-channel plugins the server was started with (``--alerts``),
and the alerts the server raises itself.

Each channel gets alerts through a bounded queue and a thread of its own:
whoever raised an alert (a request, the engine) hands it over and goes on,
whatever the receiver does. A batch that cannot be sent is sent again with
back-off (1, 2, 4 ... 60 seconds) until :data:`GIVE_UP_AFTER`, with the
alerts raised meanwhile joining it; then it is dropped with a warning. An
alert is worth more late than never, but not forever: a receiver down for a
day would otherwise get a day-old flood.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from fleetcore.alerts.interface import AlertSender
from fleetcore.model import Alert

log = logging.getLogger("fleetcore.server.alerts")

QUEUE_ALERTS = 1000
"""Alerts waiting for a channel before new ones are dropped."""
BATCH_ALERTS = 200
"""At most this many alerts per ``send``."""
FIRST_RETRY = 1.0
MAX_RETRY = 60.0
GIVE_UP_AFTER = 600.0
OFFLINE_ONE_BY_ONE = 10
"""More devices than this going offline in one pass make one alert, not one each."""


class AlertPump:
    def __init__(
        self,
        label: str,
        sender: AlertSender,
        *,
        first_retry: float = FIRST_RETRY,
        max_retry: float = MAX_RETRY,
        give_up_after: float = GIVE_UP_AFTER,
    ) -> None:
        self.label = label
        self.sender = sender
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.give_up_after = give_up_after
        # None wakes the thread to stop; no polling while nothing happens.
        self._queue: queue.Queue[Alert | None] = queue.Queue(QUEUE_ALERTS)
        self._stop = threading.Event()
        self._dropping = False
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name=f"alerts-{label}", daemon=True)
        self._thread.start()

    def submit(self, alert: Alert) -> None:
        """Hand an alert over; never blocks."""
        try:
            self._queue.put_nowait(alert)
            self._dropping = False
        except queue.Full:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning("alerts to %s fall behind: dropping new ones", self.label)

    def _take(self, batch: list[Alert], block: bool) -> None:
        """Add what is queued to ``batch``; with ``block``, wait for the first."""
        with contextlib.suppress(queue.Empty):
            while len(batch) < BATCH_ALERTS:
                item = self._queue.get() if block and not batch else self._queue.get_nowait()
                if item is None:
                    return  # close() was called; _stop says so
                batch.append(item)

    def _run(self) -> None:
        while True:
            batch: list[Alert] = []
            self._take(batch, block=not self._stop.is_set())
            if not batch:
                if self._stop.is_set():
                    return
                continue
            self._deliver(batch)

    def _deliver(self, batch: list[Alert]) -> None:
        """Send ``batch`` until it goes through or its time is up."""
        started, delay = time.monotonic(), self.first_retry
        while True:
            try:
                self.sender.send(list(batch))
            except Exception as exc:
                self.failures += 1
                waited = time.monotonic() - started
                if waited + delay > self.give_up_after or self._stop.is_set():
                    self.dropped += len(batch)
                    log.warning(
                        "cannot send %d alert(s) to %s, dropped after %.0fs: %s",
                        len(batch),
                        self.label,
                        waited,
                        exc,
                    )
                    return
                if self.failures == 1 or delay >= self.max_retry:
                    log.warning(
                        "cannot send alerts to %s (retrying in %.0fs): %s", self.label, delay, exc
                    )
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_retry)
                self._take(batch, block=False)  # raised meanwhile: in the same retry
                continue
            self.sent += len(batch)
            if self.failures:
                log.info("alerts to %s delivered again", self.label)
                self.failures = 0
            return

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (one try each, for at most ``timeout``), then
        close the channel."""
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        try:
            self.sender.close()
        except Exception as exc:
            log.warning("closing the alert channel %s: %s", self.label, exc)


def sink(pumps: Sequence[AlertPump]) -> Callable[[Alert], None]:
    """``Context.alert_sink`` for these channels: log each alert, hand it to each."""

    def send(alert: Alert) -> None:
        log_alert(alert)
        for pump in pumps:
            pump.submit(alert)

    return send


def log_alert(alert: Alert) -> None:
    state = "resolved" if alert.resolved else alert.severity
    log.warning("alert %s (%s): %s", alert.name, state, alert.summary)


# -- the alerts the server raises --------------------------------------------------------


def rollout_halted(ro: Any, why: str, at: float, *, by_operator: bool) -> Alert:
    """A rollout halted: by its health gate (critical) or by an operator (warning)."""
    return Alert(
        name="rollout-halted",
        severity="warning" if by_operator else "critical",
        summary=f"rollout {ro.id} of {ro.commit[:12]} to {_roles(ro)} halted: {why}",
        labels=_rollout_labels(ro),
        detail={"rollout": ro.id, "step": ro.step, "reason": why},
        at=at,
    )


def rollout_resumed(ro: Any, at: float, *, halted_by_operator: bool) -> Alert:
    """The halt is over (resumed or aborted): the same alert, resolved."""
    return Alert(
        name="rollout-halted",
        severity="warning" if halted_by_operator else "critical",
        summary=f"rollout {ro.id} of {ro.commit[:12]} to {_roles(ro)} no longer halted",
        labels=_rollout_labels(ro),
        detail={"rollout": ro.id, "step": ro.step},
        at=at,
        resolved=True,
    )


def device_safe_mode(
    device_id: str, role: str, commit: str, error: str | None, at: float, *, resolved: bool = False
) -> Alert:
    """A device entered safe mode (or left it: ``resolved``); ``commit`` is
    the one it was updating to, else the one it runs."""
    what = "left safe mode" if resolved else "entered safe mode"
    return Alert(
        name="device-safe-mode",
        severity="critical",
        summary=f"device {device_id} ({role}) {what}"
        + (f": {error}" if error and not resolved else ""),
        labels={"device": device_id, "role": role, "commit": commit},
        detail={"error": error or ""},
        at=at,
        resolved=resolved,
    )


def device_offline(device: Any, silent_for: float, at: float, *, resolved: bool = False) -> Alert:
    """A device silent longer than ``--offline-after`` (or back: ``resolved``)."""
    what = "is back online" if resolved else f"offline: silent for {silent_for:.0f}s"
    return Alert(
        name="device-offline",
        severity="warning",
        summary=f"device {device.device_id} ({device.role}) {what}",
        labels={"device": device.device_id, "role": device.role, "commit": device.commit or ""},
        detail={"silent_seconds": round(silent_for)},
        at=at,
        resolved=resolved,
    )


def devices_offline(devices: Sequence[Any], at: float) -> Alert:
    """Many devices offline at once (a site's network, a power cut): one alert."""
    roles = sorted({d.role for d in devices})
    return Alert(
        name="devices-offline",
        severity="critical",
        summary=f"{len(devices)} devices went offline at once (roles: {', '.join(roles)})",
        labels={"role": roles[0] if len(roles) == 1 else "*", "commit": ""},
        detail={"devices": sorted(d.device_id for d in devices)[:100], "count": len(devices)},
        at=at,
    )


def _roles(ro: Any) -> str:
    if ro.role:
        return str(ro.role)
    return ",".join(ro.roles) if ro.roles else "every role"


def _rollout_labels(ro: Any) -> dict[str, str]:
    role = ro.role or (",".join(ro.roles) if ro.roles else "*")
    return {"rollout": str(ro.id), "commit": ro.commit, "role": role}
