"""Power cuts at random moments, the short version of the stress benchmark
(benchmarks/power_cuts.py runs a thousand): SIGKILL at random points of
random updates and recoveries, then every trial must end consistent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "power_cuts.py"


@pytest.mark.slow
def test_random_power_cuts_leave_a_consistent_device() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--trials", "12", "--seed", "11", "--json"],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["trials"] == 12
    assert result["bad"] == 0, json.dumps(result["bad_trials"], indent=1)
    assert out.returncode == 0, out.stderr[-2000:]
