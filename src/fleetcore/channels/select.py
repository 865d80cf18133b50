"""Choosing event channels: the server's ``--events`` values and the agent's
``[server] events``, resolved through the plugin manager.

``sse`` is not a plugin: it is the server's own stream, always served, and
the agent's default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from fleetcore.plugin.urls import Selected, label, select_all

if TYPE_CHECKING:
    from fleetcore.config.agent import AgentConfig
    from fleetcore.plugin.manager import PluginManager

__all__ = ["KIND", "SERVER_SOURCE", "SSE", "Selected", "agent_channel", "server_channels"]

SSE = "sse"
KIND = "event channel"
SERVER_SOURCE = "--events"


def server_channels(pm: PluginManager, values: Iterable[str]) -> list[Selected]:
    """Every ``--events`` value resolved, or one error listing each problem."""
    return select_all(pm, KIND, list(values), SERVER_SOURCE, note=" (sse is always served)")


def agent_channel(pm: PluginManager, config: AgentConfig, source: str) -> Selected | None:
    """The plugin channel ``[server] events`` selects; None for sse or off."""
    server = config.server
    if server is None or server.events in (None, SSE):
        return None
    name = server.events
    record = pm.registry(KIND).get(name, where="server.events", source=source)
    table = config.events.get(name)
    options = pm.options(record, table, where=f"events.{name}", source=source)
    url = (table or {}).get("url")
    return Selected(record, options, label(url) if isinstance(url, str) else name)
