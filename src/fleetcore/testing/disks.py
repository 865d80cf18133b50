"""A small real filesystem for disk-full tests.

``small_disk(path, size)`` mounts a tmpfs of ``size`` bytes at ``path`` for the
duration of a ``with`` block: a device whose state folder lives there runs out
of space for real (``ENOSPC`` from the kernel, ``df`` that says so), which no
mock of ``shutil.disk_usage`` shows. Mounting needs root (or
``CAP_SYS_ADMIN``); without it the test fails with a message saying so::

    from fleetcore.testing.disks import small_disk

    with small_disk(tmp_path / "disk", 8 << 20) as disk:
        ...  # state_dir = disk / "state"
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def small_disk(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` (created), unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        raise RuntimeError(
            f"cannot mount a {size}-byte tmpfs at {path} (needs root): {mounted.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free
