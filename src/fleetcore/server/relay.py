"""Events between server replicas that share one PostgreSQL: LISTEN/NOTIFY.

A device's event stream is held by whichever replica it connected to, while
the change that moves it may be made on another. Each replica delivers its
own events at once and also NOTIFYs them; every other replica LISTENs and
delivers them to the streams it holds. SQLite means one server: no relay.

The same channel carries the replicas' own notes to each other (names
starting with ``server:``, never sent to a device): a credential replaced or
revoked on one replica is forgotten by all of them at once, so they can keep
credentials in memory as long as a lone server does. A replica whose
listening connection dropped may have missed such notes: on every
reconnection the ``on_connect`` callbacks run (the credential cache is
emptied).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from fleetcore.server.events import Event, EventHub

log = logging.getLogger("fleetcore.server.relay")

CHANNEL = "fleetcore_events"
INTERNAL = "server:"
"""Events with names starting so are notes between replicas, not for devices."""
BATCH = 40
"""Events per NOTIFY: a payload must stay under PostgreSQL's 8000 bytes."""


class PgRelay:
    def __init__(self, engine: sa.Engine, hub: EventHub) -> None:
        self.engine = engine
        self.hub = hub
        self.origin = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self._notes: dict[str, Callable[[str, dict[str, Any]], None]] = {}
        self._on_connect: list[Callable[[], None]] = []

    def subscribe(self, name: str, callback: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``callback(device_id, data)`` for the other replicas' notes
        ``name`` (which starts with ``server:``)."""
        assert name.startswith(INTERNAL)
        self._notes[name] = callback

    def on_connect(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever the relay starts listening (again):
        notes sent while it was not may be lost."""
        self._on_connect.append(callback)

    def publish(self, events: Iterable[Event]) -> None:
        items = [[e.device_id, e.name, e.data] for e in events]
        if not items:
            return
        with self.engine.begin() as conn:
            for start in range(0, len(items), BATCH):
                payload = json.dumps({"o": self.origin, "e": items[start : start + BATCH]})
                conn.execute(sa.select(sa.func.pg_notify(CHANNEL, payload)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._listen, name="pg-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _listen(self) -> None:
        import psycopg

        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    for callback in self._on_connect:
                        callback()
                    self.ready.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._deliver(note.payload)
            except Exception as exc:
                # The database restarting must not end event delivery for good.
                self.ready.clear()
                log.warning("event relay lost its connection, retrying: %s", exc)
                self._stop.wait(2.0)

    def _deliver(self, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if data.get("o") == self.origin:
            return  # our own events were delivered when they happened
        events = []
        for device_id, name, body in data.get("e", ()):
            if not name.startswith(INTERNAL):
                events.append(Event(device_id, name, body))
            elif (callback := self._notes.get(name)) is not None:
                try:
                    callback(device_id, body)
                except Exception:
                    log.exception("could not act on the relayed note %s", name)
        self.hub.publish(events)
