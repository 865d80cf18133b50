"""Crash-safe file operations: every write is all or nothing.

A kill at any moment leaves either the old or the new content, never a mix:
data goes to a temporary file in the same folder, is flushed to disk, and
replaces the target with one rename; the folder is flushed so the rename
itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fleetcore.errors import LockHeldError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n", mode)


def atomic_symlink(link: Path, target: str | Path) -> None:
    """Point ``link`` at ``target`` with one rename: readers see the old or the new link."""
    tmp = link.with_name(f".{link.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def append_line(path: Path, line: str) -> None:
    """Append one line and flush it to disk. A torn last line (power cut
    mid-write) is skipped by readers."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines_json(path: Path) -> list[Any]:
    if not path.exists():
        return []
    out = []
    for raw in path.read_bytes().splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue  # a line torn by a crash
    return out


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an ``flock`` on ``path``; the kernel drops it when the process dies."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeldError(f"another agent holds {path}; skipping this cycle") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
