"""The ``alertmanager`` channel: Prometheus Alertmanager's v2 API.

Each batch is one ``POST /api/v2/alerts`` of postable alerts: ``labels``
``alertname`` (the alert's name), ``severity`` and the alert's own labels
(``role``, ``commit``, ``device``, ``rollout``, ``incident``; empty values
left out, names made valid label names); ``annotations`` ``summary`` and
``description`` (the detail as ``key=value`` lines); ``startsAt`` the
alert's time and ``endsAt`` that time plus ``ends_after`` while firing, the
alert's time itself once resolved. Alertmanager identifies an alert by its
labels, so the resolved alert (same labels) ends the firing one.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Sequence
from typing import Any

from fleetcore.http import Client
from fleetcore.plugin import Alert
from fleetcore_alerts.options import AlertmanagerOptions, bearer

PATH = "/api/v2/alerts"
_NOT_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def label_name(key: str) -> str:
    name = _NOT_LABEL.sub("_", key)
    return f"_{name}" if not name or name[0].isdigit() else name


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat().replace("+00:00", "Z")


def postable(alert: Alert, ends_after: float) -> dict[str, Any]:
    labels = {label_name(k): str(v) for k, v in alert.labels.items() if v not in ("", None)}
    labels.update(alertname=alert.name, severity=alert.severity)
    description = "\n".join(f"{k}={v}" for k, v in sorted(alert.detail.items()))
    # A resolved alert ends now at the latest: Alertmanager keeps an alert
    # whose end is still ahead active (a server clock running ahead).
    ends = min(alert.at, time.time()) if alert.resolved else alert.at + ends_after
    return {
        "labels": labels,
        "annotations": {"summary": alert.summary, "description": description},
        "startsAt": _iso(min(alert.at, ends)),
        "endsAt": _iso(ends),
    }


class AlertmanagerSender:
    def __init__(self, options: AlertmanagerOptions) -> None:
        self.options = options
        self.url = options.base_url + PATH
        self.client = Client(
            ca_file=options.ca_file, timeout=options.timeout.seconds, proxies=False
        )

    def send(self, alerts: Sequence[Alert]) -> None:
        body = [postable(a, self.options.ends_after.seconds) for a in alerts]
        headers = bearer(self.options.token_file)
        with self.client.request("POST", self.url, json=body, headers=headers):
            pass

    def close(self) -> None:
        pass
