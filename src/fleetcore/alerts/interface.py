"""What an alert-channel plugin implements: telling operators what needs them.

The control server raises an :class:`~fleetcore.model.Alert` when something
needs a person: an incident opens or changes level, a device enters safe
mode or stays offline, a rollout halts. It hands each alert to every channel
given with ``fleetcore server run --alerts URL``. A channel is one object, a
**sender**, made by the record's ``sender(options)`` factory:

- ``send(alerts)`` delivers a batch of one or more alerts. It runs in a
  thread of the channel's own, never in a request or in the rollout engine,
  so a slow receiver delays only that channel's alerts;
- when it raises, the server sends the same batch again with back-off
  (about 1, 2, 4 ... 60 seconds apart) for a while before dropping it with a
  warning, so a sender need not retry by itself. It must not hang: give up
  within a timeout of your own and raise;
- ``close()`` lets go of connections when the server stops.

An :class:`~fleetcore.model.Alert` has ``name`` (``device-safe-mode``,
``rollout-halted``, ``incident-critical`` ...), ``severity`` (``info``,
``warning``, ``critical``, ``emergency``), ``summary`` (one line for a
person), ``labels`` (``role``, ``commit``, ``device``, ``rollout``,
``incident`` as they apply), ``detail`` (JSON-able facts), ``at`` (UNIX
seconds) and ``resolved`` (the condition is over).

An alert channel writing one JSON line per alert to a file (a toy, but
complete)::

    @frozen(kw_only=True)
    class FileOptions:
        url: str                      # file:///var/log/fleet-alerts.jsonl

    class FileSender:
        def __init__(self, options):
            self.path = Path(urlsplit(options.url).path)

        def send(self, alerts):
            with self.path.open("a") as out:
                for alert in alerts:
                    out.write(json.dumps({"name": alert.name, "summary": alert.summary,
                                          **alert.labels}) + "\\n")

        def close(self):
            pass

    @hookimpl
    def fleetcore_register_alert_channels():
        yield AlertChannel(name="file", summary="Alerts as JSON lines in a file",
                           schemes=("file",), config_type=FileOptions, sender=FileSender)

``fleetcore server run --alerts file:///var/log/fleet-alerts.jsonl`` then
selects it. The names here are defined in :mod:`fleetcore.plugin.protocols`
and :mod:`fleetcore.plugin.types` and exported by :mod:`fleetcore.plugin`
too; :class:`fleetcore.testing.conformance.alerts.AlertChannelKit` checks a
channel against a real receiver.
"""

from fleetcore.model import Alert
from fleetcore.plugin.protocols import AlertSender
from fleetcore.plugin.types import AlertChannel

__all__ = ["Alert", "AlertChannel", "AlertSender"]
