"""Events between server replicas that share one PostgreSQL: LISTEN/NOTIFY.

A device's event stream is held by whichever replica it connected to, while
the change that moves it may be made on another. Each replica delivers its
own events at once and also NOTIFYs them; every other replica LISTENs and
delivers them to the streams it holds. SQLite means one server: no relay.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable

import sqlalchemy as sa

from fleetcore.server.events import Event, EventHub

log = logging.getLogger("fleetcore.server.relay")

CHANNEL = "fleetcore_events"
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
        self.hub.publish(Event(d, name, body) for d, name, body in data.get("e", ()))
