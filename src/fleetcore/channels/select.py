"""Choosing event channels: the server's ``--events`` values and the agent's
``[server] events``, resolved through the plugin manager.

``sse`` is not a plugin: it is the server's own stream, always served, and
the agent's default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from attrs import frozen

from fleetcore.errors import ConfigError, PluginError, UnknownPluginError

if TYPE_CHECKING:
    from fleetcore.config.agent import AgentConfig
    from fleetcore.plugin.manager import PluginManager
    from fleetcore.plugin.types import EventChannel

SSE = "sse"
KIND = "event channel"
SERVER_SOURCE = "--events"


@frozen
class Selected:
    record: EventChannel
    options: Any
    label: str
    """What logs call it: the URL without credentials or query, or the name."""


def server_channels(pm: PluginManager, values: Iterable[str]) -> list[Selected]:
    """Every ``--events`` value resolved, or one error listing each problem."""
    selected: list[Selected] = []
    problems: list[str] = []
    for value in values:
        try:
            selected.append(_from_value(pm, value))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(SERVER_SOURCE, problems)
    return selected


def _from_value(pm: PluginManager, value: str) -> Selected:
    head, _, query = value.strip().partition("?")
    scheme, sep, _ = head.partition("://")
    registry = pm.registry(KIND)
    if sep:
        by_scheme: dict[str, EventChannel] = {}
        for record in registry:
            for claimed in record.schemes or (record.name,):
                other = by_scheme.setdefault(claimed, record)
                if other is not record:
                    raise PluginError(
                        f"URL scheme {claimed}:// is claimed by event channels {other.name} "
                        f"({registry.provider(other.name)}) and {record.name} "
                        f"({registry.provider(record.name)}); disable one of them"
                    )
        found = by_scheme.get(scheme.lower())
        wanted = f"{scheme}://"
    else:
        found = next((r for r in registry if r.name == head), None)
        wanted = head
    if found is None:
        # The value is never echoed whole: a URL may carry a password.
        installed = ", ".join(
            f"{r.name} ({', '.join(f'{s}://' for s in r.schemes or (r.name,))})" for r in registry
        )
        raise UnknownPluginError(
            SERVER_SOURCE,
            [
                f"unknown event channel {wanted!r}; "
                f"installed: {installed or 'none'} (sse is always served); "
                "see `fleetcore plugins`"
            ],
        )
    data: dict[str, Any] = {"url": head} if sep else {}
    for key, item in parse_qsl(query, keep_blank_values=True):
        if key in data:
            raise ConfigError(SERVER_SOURCE, [f"{key} given twice @ {found.name}.{key}"])
        data[key] = item
    options = pm.options(found, data, where=found.name, source=SERVER_SOURCE)
    return Selected(found, options, _label(head) if sep else head)


def _label(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


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
    return Selected(record, options, _label(url) if isinstance(url, str) else name)
