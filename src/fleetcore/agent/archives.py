"""Role archives downloaded from the control server, kept in the agent's
cache: a download becomes the cached archive only once it has the size the
server announced; one cut short stays ``.partial`` and the next try asks for
the rest with ``Range``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetcore.errors import FetchError
from fleetcore.http import Response, TransportError

CHUNK = 1 << 16
KEEP = 2
"""Whole archives kept in the cache (the newest)."""


def receive(
    response: Response,
    partial: Path,
    have: int,
    label: str,
    progress: Callable[[str, int | None], Callable[[int], Any]] | None,
) -> None:
    """Write the body of ``response`` to ``partial`` (appending when the
    server resumed at ``have``); a FetchError when it stops short."""
    resumed = bool(have) and response.status == 206
    total = total_size(response, have if resumed else 0)
    written = have if resumed else 0
    update = progress(f"download {label}", total) if progress else None
    try:
        with partial.open("ab" if resumed else "wb") as out:
            for chunk in response.iter_bytes(CHUNK):
                out.write(chunk)
                written += len(chunk)
                if update is not None:
                    update(written)
    except TransportError as exc:
        raise FetchError(
            f"the download of {label} was cut after {written} bytes "
            f"(it resumes from there): {exc.reason}"
        ) from None
    if total is not None and written != total:
        # Closed early without an error (urllib reports that as the end):
        # keep what came, never as a whole archive.
        if written > total:
            partial.unlink(missing_ok=True)
        raise FetchError(f"the download of {label} ended after {written} of {total} bytes")


def hand_over(done: Path, dest: Path, cache: Path) -> Path:
    """The cached archive ``done`` as ``dest/role.tar`` (a hard link where
    possible), and only the newest archives left in ``cache``."""
    target = dest / "role.tar"
    if _same_fs(done, dest):
        os.link(done, target)
    else:
        shutil.copyfile(done, target)
    for old in sorted(cache.glob("*.tar"), key=lambda p: p.stat().st_mtime)[:-KEEP]:
        old.unlink(missing_ok=True)
    return target


def total_size(response: Response, offset: int) -> int | None:
    """The size the whole download will have: from ``Content-Range``
    (``bytes a-b/total``) or ``offset`` + ``Content-Length``; None if unsaid."""
    ranged = response.headers.get("Content-Range") or ""
    if "/" in ranged and ranged.rsplit("/", 1)[1].strip().isdigit():
        return int(ranged.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length") or ""
    return offset + int(length) if length.strip().isdigit() else None


def _same_fs(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.stat().st_dev
    except OSError:
        return False
