"""What an event-channel plugin implements: carrying the server's events.

The control server tells devices that their desired state moved
(``update-available``, ``policy-changed``). It always serves them over
Server-Sent Events; a channel plugin carries them over something else a fleet
already runs (an MQTT broker, NATS, ...). A channel has two halves:

- a **publisher**, in the server: ``publish(events)`` gets every batch of
  events one change produced and sends each to its device;
- a **subscriber**, in the agent: it listens for its own device's events and
  calls ``wake(name)`` for each of :data:`EVENT_NAMES`.

An event is only a hint. A woken agent asks the server's authenticated
``/desired`` endpoint what to do, exactly as on its scheduled poll, so a lost
event costs a wait until the next poll and a forged one at most an extra
poll. Channels therefore need not be reliable, ordered or confidential, but
they must never block or crash their host:

- factories return at once; connect in the background and reconnect by
  yourself (a broker that is down when the process starts comes up later);
- ``publish`` may raise when it cannot send: the server logs a warning and
  goes on. The server calls it from a thread of the channel's own, never from
  a request, so a slow broker delays only that channel's events;
- a subscriber ignores anything it cannot read (log it at debug level).

A channel over a shared folder (a toy, but complete: one file per device)::

    class FolderPublisher:
        def __init__(self, options):
            self.folder = options.folder

        def publish(self, events):
            for event in events:
                (self.folder / event.device_id).write_text(event.name)

        def close(self):
            pass

    class FolderSubscriber:
        def __init__(self, options, device_id, wake):
            self.path, self.wake = options.folder / device_id, wake
            self.stop = threading.Event()

        def start(self):
            threading.Thread(target=self.run, daemon=True).start()

        def run(self):
            while not self.stop.wait(1.0):
                name = self.path.read_text() if self.path.exists() else ""
                self.path.unlink(missing_ok=True)
                if name in EVENT_NAMES:
                    self.wake(name)

        def close(self):
            self.stop.set()

    @hookimpl
    def fleetcore_register_event_channels():
        yield EventChannel(name="folder", summary="Events as files in a shared folder",
                           config_type=FolderOptions, publisher=FolderPublisher,
                           subscriber=FolderSubscriber)

The names here are defined in :mod:`fleetcore.plugin.protocols` (values in
:mod:`fleetcore.model`) and exported by :mod:`fleetcore.plugin` too.
"""

from fleetcore.model import Event
from fleetcore.plugin.protocols import EVENT_NAMES, EventPublisher, EventSubscriber

__all__ = ["EVENT_NAMES", "Event", "EventPublisher", "EventSubscriber"]
