"""Choosing alert channels: the server's ``--alerts`` values, resolved
through the plugin manager by URL scheme (``https://...`` selects the channel
claiming ``https``) or by name (``NAME?key=value``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from fleetcore.plugin.urls import Selected, select_all

if TYPE_CHECKING:
    from fleetcore.plugin.manager import PluginManager

KIND = "alert channel"
SERVER_SOURCE = "--alerts"


def server_alert_channels(pm: PluginManager, values: Iterable[str]) -> list[Selected]:
    """Every ``--alerts`` value resolved, or one error listing each problem."""
    return select_all(pm, KIND, list(values), SERVER_SOURCE)
