"""The ``webhook`` channel: each batch of alerts as one JSON ``POST``.

Body::

    {"source": "fleetcore", "version": 1,
     "alerts": [{"name": "rollout-halted", "severity": "critical",
                 "summary": "rollout 3 of 1a2b3c4d5e6f to camera halted: ...",
                 "labels": {"rollout": "3", "commit": "...", "role": "camera"},
                 "detail": {...}, "at": "2026-11-30T10:00:00+00:00",
                 "resolved": false}]}

Any 2xx answer is success; anything else (or no answer within ``timeout``)
raises, and the server sends the batch again with back-off.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from fleetcore.http import Client
from fleetcore.plugin import Alert
from fleetcore_alerts.options import WebhookOptions, bearer

VERSION = 1


def payload(alerts: Sequence[Alert]) -> dict[str, Any]:
    return {
        "source": "fleetcore",
        "version": VERSION,
        "alerts": [
            {
                "name": a.name,
                "severity": a.severity,
                "summary": a.summary,
                "labels": dict(a.labels),
                "detail": dict(a.detail),
                "at": dt.datetime.fromtimestamp(a.at, dt.UTC).isoformat(),
                "resolved": a.resolved,
            }
            for a in alerts
        ],
    }


class WebhookSender:
    def __init__(self, options: WebhookOptions) -> None:
        self.options = options
        self.client = Client(
            ca_file=options.ca_file, timeout=options.timeout.seconds, proxies=False
        )

    def send(self, alerts: Sequence[Alert]) -> None:
        body = payload(alerts)
        headers = bearer(self.options.token_file)
        with self.client.request("POST", self.options.url, json=body, headers=headers):
            pass

    def close(self) -> None:
        pass
