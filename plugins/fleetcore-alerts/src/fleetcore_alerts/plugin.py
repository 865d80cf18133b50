"""Registers the ``webhook`` (``http://``, ``https://``) and ``alertmanager``
(``alertmanager://``, ``alertmanager+http://``, ``alertmanager+https://``)
alert channels."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fleetcore.plugin import AlertChannel, hookimpl
from fleetcore_alerts.options import AlertmanagerOptions, WebhookOptions


def webhook(options: WebhookOptions) -> Any:
    from fleetcore_alerts.webhook import WebhookSender

    return WebhookSender(options)


def alertmanager(options: AlertmanagerOptions) -> Any:
    from fleetcore_alerts.alertmanager import AlertmanagerSender

    return AlertmanagerSender(options)


@hookimpl
def fleetcore_register_alert_channels() -> Iterator[AlertChannel]:
    yield AlertChannel(
        name="webhook",
        summary="Alerts as JSON POSTed to a URL (chat bridges, pagers, your own service)",
        schemes=("http", "https"),
        config_type=WebhookOptions,
        sender=webhook,
    )
    yield AlertChannel(
        name="alertmanager",
        summary="Alerts to Prometheus Alertmanager (v2 API), grouped and routed there",
        schemes=("alertmanager", "alertmanager+http", "alertmanager+https"),
        config_type=AlertmanagerOptions,
        sender=alertmanager,
    )
