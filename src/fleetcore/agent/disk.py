"""Free space for an update: the reserve of ``[disk]``, old releases cleaned
to make room."""

from __future__ import annotations

import logging
import shutil

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


def ensure_space(store: StateStore, needed: int, reserve: int, step: str) -> None:
    """Raise DiskFull unless ``needed`` bytes plus the reserve are free, after
    removing old releases if that is what it takes."""
    free = shutil.disk_usage(store.root).free
    if free >= needed + reserve:
        return
    removed = clean_releases(store)
    if removed:
        log.info("cleaned old releases to make room: %s", ", ".join(removed))
    free = shutil.disk_usage(store.root).free
    if free < needed + reserve:
        raise DiskFull(
            f"disk full: the {step} needs {needed + reserve} bytes free "
            f"({needed} + reserve {reserve}), {free} are free"
        )
