"""The ``fleetcore`` entry points of the installed distributions, found cheaply.

:mod:`importlib.metadata` costs a device about 30 ms of CPU at every start of
``fleetcore agent once`` (it imports ``email``, ``zipfile``, ``csv`` and
parses every distribution's metadata), more than the rest of plugin loading.
The agent needs far less: the ``[fleetcore]`` section of each
``entry_points.txt``. This module reads exactly that, with the same rules:

- folders on :data:`sys.path`, in order; ``*.dist-info`` and ``*.egg-info``;
- a distribution name found twice counts once, the first one on the path
  (``importlib.metadata.entry_points`` does the same);
- a distribution's name and version (``fleetcore plugins``) are read from
  its ``METADATA`` only when asked for.

Zip files on the path are not searched (plugins are installed as folders).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from importlib import import_module
from pathlib import Path
from typing import Any

SUFFIXES = (".dist-info", ".egg-info")


class EntryPoint:
    """One ``name = module:attr`` line of a group, and where it comes from."""

    __slots__ = ("_headers", "_metadata", "name", "value")

    def __init__(
        self,
        name: str,
        value: str,
        *,
        metadata: Path | None = None,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        self.name = name
        self.value = value
        self._metadata = metadata
        self._headers: dict[str, str] | None = None
        if distribution is not None or version is not None:
            self._headers = {"Name": distribution or "", "Version": version or ""}

    def __repr__(self) -> str:
        return f"EntryPoint({self.name!r}, {self.value!r})"

    def load(self) -> Any:
        """Import the module and return the object the value names."""
        module, _, attr = self.value.partition(":")
        obj: Any = import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj

    @property
    def distribution(self) -> str | None:
        return self._header("Name")

    @property
    def version(self) -> str | None:
        return self._header("Version")

    def _header(self, key: str) -> str | None:
        if self._headers is None:
            self._headers = _headers(self._metadata)
        return self._headers.get(key) or None


def entry_points(group: str, path: Iterable[str] | None = None) -> list[EntryPoint]:
    """The entry points of ``group`` in the distributions on ``path``
    (default :data:`sys.path`)."""
    seen: set[str] = set()
    found: list[EntryPoint] = []
    for folder in sys.path if path is None else path:
        try:
            entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
        except OSError:
            continue  # a zip file, a missing folder
        for entry in entries:
            if not entry.name.endswith(SUFFIXES):
                continue
            key = _normalize(entry.name.rsplit(".", 1)[0].partition("-")[0])
            if key in seen:
                continue
            seen.add(key)
            info = Path(entry.path)
            try:
                text = (info / "entry_points.txt").read_text(encoding="utf-8")
            except OSError:
                continue
            meta = info / ("METADATA" if entry.name.endswith(".dist-info") else "PKG-INFO")
            found.extend(
                EntryPoint(name, value, metadata=meta) for name, value in _section(text, group)
            )
    return found


def _normalize(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """``name = value`` pairs of one section of an ``entry_points.txt``."""
    pairs = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            inside = line[1:-1].strip() == group
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            # A trailing "[extra]" is a requirement of setuptools' days, not part of the value.
            value = value.split("[", 1)[0].strip()
            pairs.append((name.strip(), value))
    return pairs


def _headers(metadata: Path | None) -> dict[str, str]:
    """``Name`` and ``Version`` from the top of a METADATA file."""
    headers: dict[str, str] = {}
    if metadata is None:
        return headers
    try:
        with metadata.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    break  # the body (long description) starts here
                key, sep, value = line.partition(":")
                if sep and key in ("Name", "Version") and key not in headers:
                    headers[key] = value.strip()
    except OSError:
        pass
    return headers
