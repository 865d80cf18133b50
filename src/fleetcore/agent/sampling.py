"""The device's resource use, sent with each status report: CPU use from
``/proc/stat`` deltas, memory from ``/proc/meminfo``, the state folder's
disk, and network bytes per second from ``/proc/net/dev``.

Rates need two readings. The sampler keeps the last one, so each report
covers the time since the one before; the first report of a process covers
the time since boot for CPU (the kernel's counters start there) and has no
network rate yet (interface counters wrap and get reset, so "since boot"
would mislead).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from attrs import frozen


@frozen(kw_only=True)
class Resources:
    """One sample; None where this machine cannot say (no ``/proc``)."""

    cpu_percent: float | None = None
    memory_percent: float | None = None
    disk_percent: float | None = None
    network_receive_bytes_per_second: float | None = None
    network_transmit_bytes_per_second: float | None = None


class Sampler:
    """Readings between two calls of :meth:`sample`; one per agent process."""

    def __init__(self, disk_path: Path, proc: Path = Path("/proc")) -> None:
        self.disk_path = disk_path
        self.proc = proc
        self._cpu: tuple[int, int] | None = None
        self._net: tuple[float, int, int] | None = None

    def sample(self) -> Resources:
        return Resources(
            cpu_percent=self._cpu_percent(),
            memory_percent=self._memory_percent(),
            disk_percent=self._disk_percent(),
            **self._network(),
        )

    def _cpu_percent(self) -> float | None:
        times = cpu_times(self.proc / "stat")
        if times is None:
            return None
        busy, total = times
        previous, self._cpu = self._cpu, times
        if previous is not None and total > previous[1]:
            busy, total = busy - previous[0], total - previous[1]
        if total <= 0:
            return None
        return round(min(100.0, max(0.0, 100 * busy / total)), 1)

    def _memory_percent(self) -> float | None:
        try:
            text = (self.proc / "meminfo").read_text()
            info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            total = int(info["MemTotal"].split()[0])
            available = int(info["MemAvailable"].split()[0])
        except (OSError, KeyError, ValueError, IndexError):
            return None
        return round(100 * (1 - available / total), 1) if total > 0 else None

    def _disk_percent(self) -> float | None:
        try:
            disk = os.statvfs(self.disk_path)
        except OSError:
            return None
        if not disk.f_blocks:
            return None
        return round(100 * (1 - disk.f_bavail / disk.f_blocks), 1)

    def _network(self) -> dict[str, float | None]:
        none: dict[str, float | None] = {
            "network_receive_bytes_per_second": None,
            "network_transmit_bytes_per_second": None,
        }
        counters = network_bytes(self.proc / "net" / "dev")
        if counters is None:
            return none
        now = time.monotonic()
        previous, self._net = self._net, (now, *counters)
        if previous is None or now <= previous[0]:
            return none
        elapsed = now - previous[0]
        rx, tx = counters[0] - previous[1], counters[1] - previous[2]
        if rx < 0 or tx < 0:  # an interface went away or its counters were reset
            return none
        return {
            "network_receive_bytes_per_second": round(rx / elapsed, 1),
            "network_transmit_bytes_per_second": round(tx / elapsed, 1),
        }


def cpu_times(path: Path) -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``'s first line.

    Idle is ``idle + iowait``: a CPU waiting for the disk is free to run
    something else. ``guest`` time is already counted in ``user``, so the
    total stops at ``steal``."""
    try:
        with path.open() as f:
            fields = f.readline().split()
        if not fields or fields[0] != "cpu":
            return None
        values = [int(v) for v in fields[1:9]]
    except (OSError, ValueError):
        return None
    values += [0] * (8 - len(values))
    total = sum(values)
    idle = values[3] + values[4]
    return total - idle, total


def network_bytes(path: Path) -> tuple[int, int] | None:
    """(received, transmitted) bytes of every interface but loopback."""
    try:
        lines = path.read_text().splitlines()[2:]
        rx = tx = 0
        for line in lines:
            name, _, fields = line.partition(":")
            if name.strip() != "lo":
                values = fields.split()
                rx += int(values[0])
                tx += int(values[8])
    except (OSError, ValueError, IndexError):
        return None
    return rx, tx
