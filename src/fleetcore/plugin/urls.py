"""Picking a plugin record by URL scheme or by name, for the server's
``--events`` and ``--alerts``: ``mqtt://broker:1883`` selects the channel
that claims ``mqtt``, ``NAME?key=value`` selects by name, and the URL (without
its query) and the query parameters become the record's options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from attrs import frozen

from fleetcore.errors import ConfigError, PluginError, UnknownPluginError

if TYPE_CHECKING:
    from fleetcore.plugin.manager import PluginManager


@frozen
class Selected:
    record: Any
    options: Any
    label: str
    """What logs call it: the URL without credentials or query, or the name."""


def select(pm: PluginManager, kind: str, value: str, source: str, note: str = "") -> Selected:
    """The record of ``kind`` (``event channel``, ``alert channel``) that
    ``value`` selects, with its options structured; ``source`` names the
    option in errors, ``note`` is added to the list of installed ones."""
    head, _, query = value.strip().partition("?")
    scheme, sep, _ = head.partition("://")
    registry = pm.registry(kind)
    if sep:
        by_scheme: dict[str, Any] = {}
        for record in registry:
            for claimed in record.schemes or (record.name,):
                other = by_scheme.setdefault(claimed, record)
                if other is not record:
                    raise PluginError(
                        f"URL scheme {claimed}:// is claimed by {kind}s {other.name} "
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
            source,
            [
                f"unknown {kind} {wanted!r}; "
                f"installed: {installed or 'none'}{note}; "
                "see `fleetcore plugins`"
            ],
        )
    data: dict[str, Any] = {"url": head} if sep else {}
    for key, item in parse_qsl(query, keep_blank_values=True):
        if key in data:
            raise ConfigError(source, [f"{key} given twice @ {found.name}.{key}"])
        data[key] = item
    options = pm.options(found, data, where=found.name, source=source)
    return Selected(found, options, label(head) if sep else head)


def select_all(
    pm: PluginManager, kind: str, values: tuple[str, ...] | list[str], source: str, note: str = ""
) -> list[Selected]:
    """Every value resolved, or one error listing each problem."""
    selected: list[Selected] = []
    problems: list[str] = []
    for value in values:
        try:
            selected.append(select(pm, kind, value, source, note))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(source, problems)
    return selected


def label(url: str) -> str:
    """The URL as logs may show it: no user, password, query or fragment."""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
