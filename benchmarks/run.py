"""Run fleetcore's benchmarks and print their figures side by side.

    python benchmarks/run.py                 # all
    python benchmarks/run.py converge idle   # some

Figures are whole-process measurements from the kernel (wait4, /proc):
quote the medians; a wide min-max range means a noisy machine. Results are
also written to benchmarks/results/latest.json.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import apply_large
import converge
import idle
from _common import compile_bytecode

BENCHMARKS = {"converge": converge.run, "apply": apply_large.run, "idle": idle.run}


def main(names: list[str]) -> int:
    chosen = names or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        print(f"unknown benchmarks: {', '.join(sorted(unknown))}; have: {', '.join(BENCHMARKS)}")
        return 2
    if "converge" in chosen and shutil.which("ansible-pull") is None:
        print("converge compares with ansible-pull: apt-get install ansible-core")
        return 2
    compile_bytecode()
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {Path('/proc/cpuinfo').read_text().count('processor')}"
        " CPUs"
    )
    results = {name: BENCHMARKS[name]() for name in chosen}
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
