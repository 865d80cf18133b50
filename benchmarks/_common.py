"""Shared helpers: run a command as a whole process and read the kernel's
accounting of it (user, system, wall, peak memory), children included."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from attrs import frozen

ROOT = Path(__file__).resolve().parent.parent
FLEETCORE = [sys.executable, "-m", "fleetcore"]


@frozen
class Run:
    user: float
    sys: float
    wall: float
    max_rss_mib: float
    returncode: int

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def measure(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Run:
    """One run; CPU and memory from wait4(), so every waited-for descendant
    (git, scripts, ansible's forks) is counted."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    return Run(
        user=usage.ru_utime,
        sys=usage.ru_stime,
        wall=wall,
        max_rss_mib=usage.ru_maxrss / 1024,
        returncode=proc.returncode,
    )


def median(runs: Sequence[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def spread(runs: Sequence[Run], attr: str) -> str:
    values = sorted(getattr(r, attr) for r in runs)
    return f"{statistics.median(values):.3f} ({values[0]:.3f}-{values[-1]:.3f})"


def compile_bytecode() -> None:
    """Installed packages have compiled bytecode (pip and Debian compile it at
    install); a checkout run with PYTHONDONTWRITEBYTECODE would recompile every
    module on every start and measure the compiler instead of fleetcore."""
    import compileall
    import sysconfig

    folders = [ROOT / "src", *ROOT.glob("plugins/*/src"), Path(sysconfig.get_paths()["purelib"])]
    for folder in folders:
        compileall.compile_dir(folder, quiet=2)


DEVICE_PLUGINS = (
    "fleetcore-git",
    "fleetcore-checks",
    "fleetcore-docker",
    "fleetcore-rollouts",
    "fleetcore-age",
)
"""What ``pip install 'fleetcore[device]'`` brings besides the core."""


def device_venv(folder: Path) -> Path:
    """A virtual environment as a device has it: the core and the device
    plugins installed from this checkout as ordinary (not editable) packages,
    their bytecode compiled, and nothing else on the path (the development
    venv has a .pth entry per editable package, and coverage's). Returns its
    ``python``."""
    import venv

    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    packages = [str(ROOT), *(str(ROOT / "plugins" / name) for name in DEVICE_PLUGINS)]
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages]
    proc = subprocess.run(pip, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"could not make the device venv:\n{proc.stdout}{proc.stderr}")
    # pip compiles what it installs; this makes sure of it (and of the standard library's
    # modules a venv shares with its base, compiled once by whoever installed Python).
    subprocess.run([str(python), "-m", "compileall", "-q", str(folder / "lib")], check=True)
    return python


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
