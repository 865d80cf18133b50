"""Progress of long operations, on a terminal only.

A command asks :func:`progress_factory`; on a terminal it gets a factory of
one-line meters drawn on stderr, elsewhere None, and the layers below then
report nothing (scripts, services and CI logs stay as they were). The
layers below take the factory as a plain callable, ``(label, total) ->
update(done)``, so they import nothing from here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

Update = Callable[[int], None]
Factory = Callable[[str, "int | None"], Update]

REDRAW = 0.1
"""Seconds between redraws: fast enough to look live, cheap on a Pi's console."""


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Meter:
    """One line, redrawn in place: ``label  12.0 MB / 48.0 MB  25%``. The
    line is finished (a newline) once ``done`` reaches ``total``."""

    def __init__(self, label: str, total: int | None, stream: IO[str]) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self._drawn = 0.0
        self._finished = False

    def __call__(self, done: int) -> None:
        if self._finished:
            return
        complete = self.total is not None and done >= self.total
        now = time.monotonic()
        if not complete and now - self._drawn < REDRAW:
            return
        self._drawn = now
        if self.total:
            text = (
                f"{self.label}  {size(done)} / {size(self.total)}  {min(done / self.total, 1):.0%}"
            )
        else:
            text = f"{self.label}  {size(done)}"
        # Carriage return and erase-line: the next frame replaces this one.
        self.stream.write(f"\r\x1b[2K{text}" + ("\n" if complete else ""))
        self.stream.flush()
        self._finished = complete


def progress_factory(enabled: bool = True, stream: IO[str] | None = None) -> Factory | None:
    """Meters on ``stream`` (stderr) when it is a terminal and ``enabled``
    (e.g. not with --json); otherwise None: report nothing."""
    out = stream or sys.stderr
    if not enabled or not out.isatty():
        return None

    def make(label: str, total: int | None) -> Update:
        return Meter(label, total, out)

    return make
