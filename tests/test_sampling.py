"""The agent's resource sampler: CPU use from /proc/stat deltas (not the
load average), memory, the state folder's disk and network byte rates.

Exact figures come from a folder laid out like /proc (the kernel's own
counters cannot be set from a test); the real /proc is sampled too."""

from __future__ import annotations

import os
from pathlib import Path

from fleetcore.agent.sampling import Sampler

# The two header lines (shortened here) are skipped, as the kernel's are.
NET = """Inter-|   Receive  |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets ...
    lo: {lo} 10 0 0 0 0 0 0 {lo} 10 0 0 0 0 0 0
  eth0: {rx} 10 0 0 0 0 0 0 {tx} 10 0 0 0 0 0 0
"""


def _proc(root: Path, *, user: int, idle: int, iowait: int, rx: int, tx: int) -> None:
    (root / "net").mkdir(parents=True, exist_ok=True)
    # user nice system idle iowait irq softirq steal guest guest_nice
    (root / "stat").write_text(f"cpu  {user} 0 100 {idle} {iowait} 0 0 0 7 0\ncpu0 1 2 3 4\n")
    (root / "meminfo").write_text(
        "MemTotal:        1000000 kB\nMemFree:          100000 kB\nMemAvailable:     250000 kB\n"
    )
    (root / "net" / "dev").write_text(NET.format(lo=10**9, rx=rx, tx=tx))


def test_cpu_is_the_busy_share_between_two_samples(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _proc(proc, user=900, idle=1000, iowait=0, rx=0, tx=0)
    sampler = Sampler(tmp_path, proc=proc)
    first = sampler.sample()
    # Since boot: 1000 busy (user + system) of 2000.
    assert first.cpu_percent == 50.0
    assert first.network_receive_bytes_per_second is None  # no rate from one reading
    # Then 200 busy jiffies of 1000 more; iowait counts as idle.
    _proc(proc, user=1100, idle=1700, iowait=100, rx=5_000_000, tx=1_000_000)
    second = sampler.sample()
    assert second.cpu_percent == 20.0
    assert second.memory_percent == 75.0
    assert second.network_receive_bytes_per_second is not None
    assert second.network_transmit_bytes_per_second is not None
    # Loopback traffic is left out; receive is five times transmit as written.
    ratio = second.network_receive_bytes_per_second / second.network_transmit_bytes_per_second
    assert abs(ratio - 5) < 0.01


def test_counters_that_went_backwards_give_no_rate(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    _proc(proc, user=900, idle=1000, iowait=0, rx=5000, tx=5000)
    sampler = Sampler(tmp_path, proc=proc)
    sampler.sample()
    _proc(proc, user=950, idle=1050, iowait=0, rx=10, tx=10)  # an interface was reset
    sample = sampler.sample()
    assert sample.network_receive_bytes_per_second is None
    assert sample.cpu_percent == 50.0


def test_the_real_proc(tmp_path: Path) -> None:
    sampler = Sampler(tmp_path)
    sampler.sample()
    sum(i * i for i in range(200_000))  # some CPU between the two readings
    sample = sampler.sample()
    assert sample.cpu_percent is not None and 0 <= sample.cpu_percent <= 100
    assert sample.memory_percent is not None and 0 < sample.memory_percent < 100
    disk = os.statvfs(tmp_path)
    expected = 100 * (1 - disk.f_bavail / disk.f_blocks)
    assert sample.disk_percent is not None and abs(sample.disk_percent - expected) < 1
    assert sample.network_receive_bytes_per_second is not None


def test_no_proc_gives_none_not_an_error(tmp_path: Path) -> None:
    sample = Sampler(tmp_path / "missing", proc=tmp_path / "no-proc").sample()
    assert sample.cpu_percent is None
    assert sample.memory_percent is None
    assert sample.disk_percent is None
    assert sample.network_receive_bytes_per_second is None
