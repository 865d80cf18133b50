"""Durations ("30s", "5m", "1h") and sizes ("500M", "2G") as config values."""

from __future__ import annotations

import re

from attrs import frozen

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@frozen
class Duration:
    """A length of time, written in config as ``"30s"``, ``"5m"``, ``"1h"``, ``"2d"``."""

    seconds: float

    @classmethod
    def parse(cls, text: str | int | float) -> Duration:
        if isinstance(text, bool):
            raise ValueError(f"expected a duration like '30s', '5m' or '1h', got {text!r}")
        if isinstance(text, int | float):
            return cls(float(text))
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(f"expected a duration like '30s', '5m' or '1h', got {text!r}")
        number, unit = match.groups()
        return cls(float(number) * _DURATION_UNITS[unit])

    def __str__(self) -> str:
        s = self.seconds
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if s >= size and s % size == 0:
                return f"{int(s // size)}{unit}"
        return f"{s:g}s"


@frozen
class Size:
    """A number of bytes, written in config as ``"500M"``, ``"2G"`` or ``1024``."""

    bytes: int

    @classmethod
    def parse(cls, text: str | int) -> Size:
        if isinstance(text, bool):
            raise ValueError(f"expected a size like '500M' or '2G', got {text!r}")
        if isinstance(text, int):
            return cls(text)
        match = _SIZE.match(str(text))
        if not match:
            raise ValueError(f"expected a size like '500M' or '2G', got {text!r}")
        number, unit = match.groups()
        factor = _SIZE_UNITS[(unit or "")[:1].lower()]
        return cls(int(float(number) * factor))

    def __str__(self) -> str:
        for unit, size in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
            if self.bytes >= size and self.bytes % size == 0:
                return f"{self.bytes // size}{unit}"
        return str(self.bytes)
