"""The last hour of each device's resource figures, in memory, for the
dashboard's sparklines.

Bounded: at most one sample a device per :data:`SPACING` seconds and
:data:`KEEP` samples a device (an hour at one a minute), packed into 28
bytes each, so 10,000 devices hold about 35 MB at most. Not in the
database: nothing decides on them, and writing every report twice would
cost the hot path. A restarted server starts its sparklines anew, and with
several replicas each draws from the reports it received.
"""

from __future__ import annotations

import math
import struct
import threading
from collections import deque
from collections.abc import Sequence

KEEP = 60
SPACING = 55.0
"""Seconds: a little under a minute, so reports every minute all count."""
FIELDS = ("cpu", "memory", "disk", "receive", "transmit")
_PACK = struct.Struct("<d5f")


class Samples:
    """Per device: (time, cpu %, memory %, disk %, receive B/s, transmit B/s)."""

    def __init__(self, keep: int = KEEP, spacing: float = SPACING) -> None:
        self.keep = keep
        self.spacing = spacing
        self._by_device: dict[str, deque[bytes]] = {}
        self._lock = threading.Lock()

    def add(self, device_id: str, at: float, values: Sequence[float | None]) -> None:
        """Record a report's figures (None: not reported) unless the device's
        last sample is less than ``spacing`` seconds old."""
        if all(v is None for v in values):
            return
        packed = _PACK.pack(at, *(math.nan if v is None else float(v) for v in values))
        with self._lock:
            ring = self._by_device.get(device_id)
            if ring is None:
                ring = self._by_device[device_id] = deque(maxlen=self.keep)
            elif ring and at - _PACK.unpack(ring[-1])[0] < self.spacing:
                return
            ring.append(packed)

    def forget(self, device_id: str) -> None:
        with self._lock:
            self._by_device.pop(device_id, None)

    def series(self, device_id: str, since: float) -> dict[str, list[tuple[float, float]]]:
        """Each field's (time, value) points from ``since`` on, oldest first."""
        with self._lock:
            rows = [_PACK.unpack(p) for p in self._by_device.get(device_id, ())]
        out: dict[str, list[tuple[float, float]]] = {name: [] for name in FIELDS}
        for at, *values in rows:
            if at < since:
                continue
            for name, value in zip(FIELDS, values, strict=True):
                if not math.isnan(value):
                    out[name].append((at, value))
        return out


def sparkline(
    points: list[tuple[float, float]],
    start: float,
    end: float,
    top: float | None = None,
    width: int = 120,
    height: int = 24,
) -> str:
    """An SVG polyline's ``points`` for the values over [start, end]; the
    y axis runs from 0 to ``top`` (the largest value when None)."""
    if not points or end <= start:
        return ""
    peak = top if top is not None else max(v for _, v in points) or 1.0
    coords = []
    for at, value in points:
        x = (at - start) / (end - start) * width
        y = height - min(value, peak) / peak * (height - 2) - 1
        coords.append(f"{x:.1f},{y:.1f}")
    if len(coords) == 1:  # one sample: a short flat line ending at it, so it shows
        first_x, first_y = coords[0].split(",")
        coords.insert(0, f"{max(0.0, float(first_x) - 8):.1f},{first_y}")
    return " ".join(coords)
