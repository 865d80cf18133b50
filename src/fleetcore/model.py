"""The values core and plugins hand each other: who a device is, what a check
found, what the server tells devices.

This module is the bottom of the plugin contract: it imports nothing from
fleetcore, so the records (:mod:`fleetcore.plugin.types`), the interfaces
plugins implement (:mod:`fleetcore.plugin.protocols`, re-exported by each
``fleetcore.<kind>.interface``), the release model (:mod:`fleetcore.release`)
and the configuration can all import it. Plugin authors import these names
from :mod:`fleetcore.plugin`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from attrs import field, frozen

SEGMENTS = ("canary", "early", "general")
"""The rollout segments a device can be in (``segment`` in ``agent.toml``)."""

CheckKind = Literal["verify", "validate", "health", "drift"]


@frozen(kw_only=True)
class DeviceInfo:
    """Who the device is, as far as policy and plugins are concerned."""

    device_id: str
    role: str
    segment: str = "general"


def percentage_bucket(device_id: str, commit: str) -> int:
    """The device's bucket (0-99) for a commit; eligible at ``p`` when below ``p``."""
    digest = hashlib.sha256((device_id + commit).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@frozen(kw_only=True)
class Finding:
    """One problem a check found. A check that finds nothing passed.

    ``subject`` says where (a file, a container, a URL), ``expected`` and
    ``found`` say how it differs; ``code`` lets drift fixes claim it.
    """

    message: str
    subject: str = ""
    code: str = ""
    expected: str | None = None
    found: str | None = None

    def __str__(self) -> str:
        where = f"{self.subject}: " if self.subject else ""
        how = ""
        if self.expected is not None or self.found is not None:
            how = f" (expected {self.expected}, found {self.found})"
        return f"{where}{self.message}{how}"


@frozen
class Event:
    """A hint from the control server to one device (or, with ``device_id``
    ``"*"``, to every device): ``update-available`` or ``policy-changed``,
    with a JSON-able ``data`` dict. Event channels carry these."""

    device_id: str
    name: str  # update-available | policy-changed | a server-internal name
    data: dict[str, Any]

    def encode(self) -> bytes:
        """The event as a Server-Sent Events message."""
        return f"event: {self.name}\ndata: {json.dumps(self.data)}\n\n".encode()


@frozen
class Alert:
    """Something an operator must hear about, sent through the alert
    channels (a webhook, Alertmanager, ...). ``name`` says what happened
    (``incident-warning``, ``device-safe-mode``, ``rollout-halted``, ...),
    ``severity`` is ``info``, ``warning``, ``critical`` or ``emergency``;
    ``labels`` identify it (``role``, ``commit``, ``device``, ``incident``)
    and ``at`` is when it happened (UNIX seconds). ``resolved`` is true when
    the condition is over (an incident closed, a device back)."""

    name: str
    severity: str
    summary: str
    labels: dict[str, str] = field(factory=dict)
    detail: dict[str, Any] = field(factory=dict)
    at: float = 0.0
    resolved: bool = False
