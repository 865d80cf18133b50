"""Picking the fetcher of a device's ``[source]`` and building its Source.

The fetcher is named in ``agent.toml`` (``[source] fetcher``, default
``git``); every other key of ``[source]`` is the fetcher's own options,
structured by the plugin's own type. Each fetcher gets its own cache folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fleetcore.config.agent import Source as SourceConfig
from fleetcore.fetch.interface import Source
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import SourceSettings


def build_source(
    pm: PluginManager,
    source: SourceConfig,
    *,
    cache_root: Path,
    config_source: str,
    progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
) -> Source:
    """The Source of the fetcher ``source.fetcher``, with its options checked
    (errors name ``source.fetcher`` or ``source`` in ``config_source``) and a
    cache at ``cache_root/<fetcher>``; ``progress`` goes to the fetcher
    (:class:`SourceSettings`)."""
    record = pm.registry("fetcher").get(
        source.fetcher, where="source.fetcher", source=config_source
    )
    options = pm.options(record, source.options, where="source", source=config_source)
    cache = cache_root / record.name
    cache.mkdir(parents=True, exist_ok=True)
    settings = SourceSettings(
        repo=source.repo, branch=source.branch, cache_dir=cache, progress=progress
    )
    source_impl: Source = record.factory(settings, options)
    return source_impl
