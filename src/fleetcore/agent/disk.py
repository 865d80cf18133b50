"""Free space for an update: the reserve of ``[disk]``, and what is cleaned
to make room (old releases first, then the fetcher's cache).

A fetch needs about twice its download free (the download, then the
unpacked tree beside it). How big the download is comes from the source
when it knows before fetching (the server's manifest; a git cache that has
the commit), else the running release's size stands in for it.
"""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Callable, Sequence

from fleetcore.agent.context import AgentContext
from fleetcore.agent.releases import clean_releases
from fleetcore.agent.results import DiskFull
from fleetcore.agent.state import StateStore
from fleetcore.errors import FleetcoreError
from fleetcore.release import read_manifest

log = logging.getLogger("fleetcore.agent")


def current_size(store: StateStore) -> int:
    """The size of the running release, by its manifest (0 if unknown)."""
    current = store.current()
    if current is None:
        return 0
    try:
        return read_manifest(store.manifest_file(current)).total_size
    except (FleetcoreError, OSError, ValueError):
        return 0


def download_size(ctx: AgentContext, commit: str) -> int:
    """The bytes fetching ``commit`` will bring: the source's answer
    (``download_size``, optional for fetchers), else the running release's size."""
    ask = getattr(ctx.source(), "download_size", None)
    if ask is not None:
        try:
            size = ask(commit, ctx.device.role)
        except (FleetcoreError, OSError) as exc:
            log.debug("download size of %s unknown: %s", commit[:12], exc)
            size = None
        if isinstance(size, int) and size >= 0:
            return size
    return current_size(ctx.store)


def free_fetch_cache(ctx: AgentContext, keep: Sequence[str | None]) -> None:
    """Ask the source to drop what it cached for commits other than ``keep``
    (``free_cache``, optional for fetchers): downloads, git objects."""
    free = getattr(ctx.source(), "free_cache", None)
    if free is None:
        return
    try:
        free(tuple(c for c in keep if c))
        log.info("freed the fetcher's cache (kept %s)", ", ".join(c[:12] for c in keep if c))
    except (FleetcoreError, OSError) as exc:
        log.warning("could not free the fetcher's cache: %s", exc)


def out_of_space(exc: BaseException) -> bool:
    """The error is the disk being full (an OSError, or a tool that said so)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc).lower()
    return "no space left on device" in text or text.startswith("disk full")


def ensure_space(
    store: StateStore,
    needed: int,
    reserve: int,
    step: str,
    free_more: Callable[[], None] | None = None,
) -> None:
    """Raise DiskFull unless ``needed`` bytes plus the reserve are free, after
    removing old releases and then (``free_more``) the fetcher's cache if
    that is what it takes."""
    free = shutil.disk_usage(store.root).free
    if free >= needed + reserve:
        return
    removed = clean_releases(store)
    if removed:
        log.info("cleaned old releases to make room: %s", ", ".join(removed))
    free = shutil.disk_usage(store.root).free
    if free < needed + reserve and free_more is not None:
        free_more()
        free = shutil.disk_usage(store.root).free
    if free < needed + reserve:
        raise DiskFull(
            f"disk full: the {step} needs {needed + reserve} bytes free "
            f"({needed} + reserve {reserve}), {free} are free"
        )
