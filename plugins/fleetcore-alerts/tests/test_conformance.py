"""Both channels against fleetcore's alert-channel kit: the webhook on a real
HTTP receiver, Alertmanager on a real Alertmanager."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from fleetcore.plugin import Alert, AlertChannel
from fleetcore.testing.conformance.alerts import AlertChannelKit
from fleetcore.testing.services import free_port
from fleetcore_alerts import plugin


def record(name: str) -> AlertChannel:
    return next(r for r in plugin.fleetcore_register_alert_channels() if r.name == name)


class TestWebhookChannel(AlertChannelKit):
    @pytest.fixture
    def record(self) -> AlertChannel:
        return record("webhook")

    @pytest.fixture
    def options(self, webhook_receiver: Any) -> Mapping[str, Any]:
        return {"url": webhook_receiver.url}

    @pytest.fixture
    def arrived(self, webhook_receiver: Any) -> Callable[[Alert], bool]:
        def arrived(alert: Alert) -> bool:
            return any(
                a["name"] == alert.name and a["labels"]["kit"] == alert.labels["kit"]
                for body in webhook_receiver.bodies
                for a in body["alerts"]
            )

        return arrived

    @pytest.fixture
    def unreachable_options(self) -> Mapping[str, Any]:
        return {"url": f"http://127.0.0.1:{free_port()}/hook", "timeout": "2s"}


class TestAlertmanagerChannel(AlertChannelKit):
    @pytest.fixture
    def record(self) -> AlertChannel:
        return record("alertmanager")

    @pytest.fixture
    def options(self, alertmanager: Any) -> Mapping[str, Any]:
        return {"url": alertmanager.channel_url}

    @pytest.fixture
    def arrived(self, alertmanager: Any) -> Callable[[Alert], bool]:
        def arrived(alert: Alert) -> bool:
            return any(
                a["labels"]["alertname"] == alert.name
                and a["labels"].get("kit") == alert.labels["kit"]
                for a in alertmanager.alerts()
            )

        return arrived

    @pytest.fixture
    def unreachable_options(self) -> Mapping[str, Any]:
        return {"url": f"alertmanager://127.0.0.1:{free_port()}", "timeout": "2s"}
