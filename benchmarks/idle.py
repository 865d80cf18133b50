"""`fleetcore agent run` at rest and during an update: resident memory and CPU.

The agent converges, then sleeps until its next cycle; we read its resident
memory and CPU time from /proc while it sleeps (no busy polling means no CPU),
then commit a change, wake it with a short interval, and read its peak
resident memory (VmHWM) across the update.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from _common import FLEETCORE, table

from fleetcore.testing.gitrepo import FleetRepo, script_role

AGENT = """\
device_id = "bench-01"
role = "web"
state_dir = "{state}"
update_interval = "{interval}"
[source]
repo = "{repo}"
[throttle]
min_interval = "0s"
max_per_hour = 100000
"""
TICK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])  # KiB
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime of the agent itself


def run(idle_seconds: float = 60.0) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="fleetcore-bench-idle-"))
    proc = None
    try:
        repo = FleetRepo.create(work / "fleet")
        repo.commit(script_role("v1"), "v1")
        config = work / "agent.toml"
        config.write_text(AGENT.format(state=work / "state", repo=repo.path, interval="1h"))
        proc = subprocess.Popen(
            [*FLEETCORE, "agent", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not (work / "state/current").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the first cycle's tail: state written, history appended
        before = cpu_seconds(proc.pid)
        rss = []
        started = time.monotonic()
        while time.monotonic() - started < idle_seconds:
            rss.append(proc_status(proc.pid)["VmRSS"])
            time.sleep(1.0)
        idle_cpu = cpu_seconds(proc.pid) - before
        idle_rss = max(rss) / 1024
        # An update: a new commit, and the agent woken by a short interval.
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        v2 = repo.commit(script_role("v2"), "v2")
        config.write_text(AGENT.format(state=work / "state", repo=repo.path, interval="1h"))
        proc = subprocess.Popen(
            [*FLEETCORE, "agent", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            target = os.readlink(work / "state/current")
            if v2[:12] in target:
                break
            time.sleep(0.05)
        time.sleep(1.0)
        peak = proc_status(proc.pid)["VmHWM"] / 1024
        print(f"\nagent run: idle for {idle_seconds:.0f} s after converging, then one update")
        print(
            table(
                [
                    ["", "figure", "target"],
                    ["resident memory, idle", f"{idle_rss:.1f} MiB", "at most 40 MiB"],
                    [
                        "peak resident memory, first cycle + update",
                        f"{peak:.1f} MiB",
                        "at most 64 MiB",
                    ],
                    [
                        "CPU while idle",
                        f"{idle_cpu / idle_seconds * 60:.3f} s per minute",
                        "no polling",
                    ],
                ]
            )
        )
        return {
            "idle_rss_mib": idle_rss,
            "update_peak_rss_mib": peak,
            "idle_cpu_per_minute": idle_cpu / idle_seconds * 60,
        }
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)
