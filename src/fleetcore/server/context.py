"""What every part of the server shares, and the one way to change things.

:class:`Context` holds the store, the fleet repo's mirror, the clock, the
rollout strategies, the desired-state cache and the event fan-out (this
server's streams, the relay to its replicas, the ``--events`` channels).

Every change goes through :meth:`Context.change`: one transaction, its
audit entries, a generation bump when it recorded anything, and after the
commit the events telling devices what moved.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from attrs import frozen
from sqlalchemy.engine import Connection

from fleetcore.errors import FetchError
from fleetcore.model import Alert
from fleetcore.plugin.manager import PluginManager
from fleetcore.rollout.select import RolloutStrategies
from fleetcore.server import bodies as b
from fleetcore.server import schema as t
from fleetcore.server.alerts import AlertPump
from fleetcore.server.channels import ChannelPump
from fleetcore.server.desired_states import DesiredStates
from fleetcore.server.events import EVERY_DEVICE, Event, EventHub
from fleetcore.server.mirror import Mirror
from fleetcore.server.pacing import WakePacer
from fleetcore.server.relay import PgRelay
from fleetcore.server.samples import Samples
from fleetcore.server.store import Store, write_audit

log = logging.getLogger("fleetcore.server")


@frozen
class Moved:
    """Tell the devices (matching ``where``) whose desired state the change
    moved, and those it ``touched`` even if their desired state stayed."""

    kind: str
    where: Any = None
    touched: tuple[str, ...] = ()


@frozen
class Everyone:
    """Tell every device: for fleet-wide policy (a pin touches them all),
    where working out who changed would cost two passes over the fleet."""

    kind: str
    payload: dict[str, Any]


class Change:
    """One change in the making: its connection (inside the transaction),
    its time, the audit entries it records and the alerts it raises."""

    def __init__(self, conn: Connection, actor: str, at: float) -> None:
        self.conn = conn
        self.actor = actor
        self.at = at
        self.entries = 0
        self.alerts: list[Alert] = []

    def alert(self, alert: Alert) -> None:
        """Raise ``alert`` once the change commits (never if it rolls back)."""
        self.alerts.append(alert)

    def audit(
        self,
        action: str,
        *,
        target: str = "",
        reason: str = "",
        detail: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> None:
        write_audit(
            self.conn,
            actor=self.actor if actor is None else actor,
            action=action,
            target=target,
            reason=reason,
            detail=detail,
            at=self.at,
        )
        self.entries += 1


class Context:
    def __init__(
        self,
        store: Store,
        mirror: Mirror,
        pm: PluginManager,
        *,
        now: Callable[[], dt.datetime] | None = None,
        offline_after: float = 180.0,
        hub: EventHub | None = None,
        channels: Sequence[ChannelPump] = (),
        wake_rate: int = 0,
    ) -> None:
        self.store = store
        self.mirror = mirror
        self.strategies = RolloutStrategies(pm)
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.offline_after = offline_after
        self.states = DesiredStates(store, mirror, self.strategies, self.now)
        self.hub = hub or EventHub()
        self.channels = tuple(channels)
        self.wakeups = WakePacer(self.publish, wake_rate)
        """The devices a change moved, told in waves of at most ``wake_rate`` a second."""
        self.samples = Samples()
        """The last hour of each device's resource figures (the dashboard's sparklines)."""
        self.relay: PgRelay | None = None
        # Where alerts go: set by the app to the alert channels it was
        # started with; by default they are only logged.
        self.alert_sink: Callable[[Alert], None] = _log_alert
        self.alert_pumps: tuple[AlertPump, ...] = ()
        if not store.sqlite:
            self.relay = PgRelay(store.engine, self.hub)

    def alert(self, alert: Alert) -> None:
        """Hand an alert to the alert channels. Never blocks and never
        raises: alerting must not stand in the way of the change it reports."""
        try:
            self.alert_sink(alert)
        except Exception:
            log.exception("could not hand over alert %s", alert.name)

    def ts(self) -> float:
        return self.now().timestamp()

    def resolve_commit(self, ref: str, field: str = "commit") -> str:
        """A commit of the fleet repo (fetched if need be), or a 400/502."""
        try:
            commit = self.mirror.resolve_or_fetch(ref)
        except FetchError as exc:
            raise b.ApiError(502, f"cannot fetch the fleet repo: {exc}", field) from None
        if commit is None:
            raise b.ApiError(400, f"unknown commit {ref!r}: not in the fleet repo", field)
        return commit

    # -- changes ------------------------------------------------------------------------

    @contextmanager
    def change(
        self, actor: str = "", *, tell: Moved | Everyone | None = None, bump: bool = True
    ) -> Iterator[Change]:
        """One change: a transaction whose block writes through ``ch.conn``
        and records what it did with ``ch.audit(...)``. On leaving the block
        the generation is bumped (when ``bump`` and anything was recorded)
        and the transaction commits; then the devices are told (``tell``)
        and the alerts raised with ``ch.alert`` go out. An exception rolls it
        all back and tells nobody."""
        before = None
        if isinstance(tell, Moved):
            with self.store.connect() as conn:
                before = self.states.desired_all(conn, tell.where)
        with self.store.begin() as conn:
            ch = Change(conn, actor, self.ts())
            yield ch
            if bump and ch.entries:
                self.store.bump_generation(conn)
        if isinstance(tell, Moved):
            assert before is not None
            self._tell_moved(tell, before)
        elif isinstance(tell, Everyone):
            self._tell_everyone(tell)
        for alert in ch.alerts:
            self.alert(alert)

    def _tell_moved(self, tell: Moved, before: dict[str, tuple[str | None, str]]) -> None:
        with self.store.connect() as conn:
            after = self.states.desired_all(conn, tell.where)
        events = []
        for device_id, (commit, why) in after.items():
            old = before.get(device_id)
            if tell.kind == "update-available":
                # Only a new commit is news: a rollout that finishes turns
                # every device's "rollout" into "stable" on the same commit,
                # and waking the whole fleet for that had every device ask
                # for its desired state in the same second.
                if commit and (old is None or old[0] != commit):
                    events.append(Event(device_id, tell.kind, {"commit": commit}))
            elif tell.kind == "policy-changed" and (
                old != (commit, why) or device_id in tell.touched
            ):
                events.append(Event(device_id, tell.kind, {"commit": commit, "why": why}))
        self.wakeups.submit(events)

    def _tell_everyone(self, tell: Everyone) -> None:
        # One event object for every stream here and one relayed message:
        # thousands of per-device copies would also wake the garbage
        # collector, whose full pass over thousands of idle streams stalls
        # the very fan-out it interrupts.
        everyone = Event(EVERY_DEVICE, tell.kind, tell.payload)
        self.hub.publish([everyone])
        self._relay([everyone])
        if self.channels:
            # A channel addresses devices one by one (an MQTT topic each).
            with self.store.connect() as conn:
                ids = [r.device_id for r in conn.execute(sa.select(t.devices.c.device_id))]
            events = [Event(device_id, tell.kind, tell.payload) for device_id in ids]
            for channel in self.channels:
                channel.submit(events)

    def publish(self, events: list[Event]) -> None:
        """To this server's streams, through the relay to its replicas', and
        to the event channels it was started with (only the replica that made
        the change sends them there: relayed events reach the hub alone)."""
        self.hub.publish(events)
        if events:
            for channel in self.channels:
                channel.submit(events)
            self._relay(events)

    def _relay(self, events: list[Event]) -> None:
        if self.relay is not None:
            try:
                self.relay.publish(events)
            except Exception:
                log.exception("could not relay events to the other servers")


def _log_alert(alert: Alert) -> None:
    log.warning("alert %s (%s): %s", alert.name, alert.severity, alert.summary)
