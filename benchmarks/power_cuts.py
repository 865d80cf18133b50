"""Power cuts at random moments: SIGKILL the agent (and its scripts) at a
random point of a random update, sometimes again while it recovers, then let
it run to the end and check what a device owner would.

    python benchmarks/power_cuts.py --trials 1000 [--seed 7] [--json]

Each trial commits a new release to a real git repository: a healthy one
(the update should stick) or one whose health check fails (it is rolled
back), with a random number of files so unpacking takes a while. The agent
(`fleetcore agent once`, its own process group, like a real device's service)
is killed after a random delay drawn over the length of a whole update, so
kills land while fetching, unpacking, verifying, switching links, writing the
state and the history, activating, checking health and rolling back. With
probability 1/2 the next run, which starts by recovering, is killed too.
Then a run goes to the end, and the trial checks:

- the state file parses, and no unreadable one was put aside;
- every line of the history parses (no torn line);
- the current release is the old or the new commit (the new one only if it is
  healthy), the release that runs is that one, and the status is healthy;
- nothing is in flight and the staging folder is gone.

A trial that breaks any of these is a bad outcome; the goal is none.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fleetcore.testing.gitrepo import FleetRepo, script_role

FLEETCORE = [sys.executable, "-m", "fleetcore"]

AGENT = """\
device_id = "cut-01"
role = "web"
state_dir = "{state}"

[source]
repo = "{repo}"

[throttle]
min_interval = "0s"
failure_pause = "0s"
max_per_hour = 100000
max_failures = 100000

[retry]
attempts = 1
backoff = "10ms"

[disk]
reserve = "1M"
"""


def release(rng: random.Random, n: int, healthy: bool) -> dict[str, str | bytes | None]:
    files: dict[str, str | bytes | None] = dict(
        script_role(f"v{n}", health="exit 0" if healthy else "exit 1")
    )
    # A fresh set of data files each time: unpacking and verifying take a while.
    for i in range(rng.randint(20, 200)):
        files[f"roles/web/data/f{i:03d}.bin"] = rng.randbytes(rng.randint(100, 20_000))
    return files


class Device:
    def __init__(self, root: Path, repo: FleetRepo) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.state = root / "state"
        self.out = root / "running.txt"
        self.config = root / "agent.toml"
        self.config.write_text(AGENT.format(state=self.state, repo=repo.path))
        self.env = {**os.environ, "FLEETCORE_TEST_OUT": str(self.out)}

    def start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*FLEETCORE, "agent", "once", "--config", str(self.config)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group: the cut takes its scripts too
        )

    def run(self) -> int:
        return self.start().wait(300)

    def cut(self, delay: float) -> str:
        """Start a run and pull the plug after ``delay`` seconds; the phase it was in."""
        proc = self.start()
        time.sleep(delay)
        phase = self.phase()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
        return phase if proc.returncode == -signal.SIGKILL else "after the end"

    def calibrate(self) -> tuple[float, float]:
        """When an update begins (the state says so) and how long a run takes."""
        started = time.monotonic()
        proc = self.start()
        begin = None
        while proc.poll() is None:
            if begin is None and self.phase() not in ("start", "no update in flight"):
                begin = time.monotonic() - started
            time.sleep(0.01)
        assert proc.returncode == 0, "the calibration update failed"
        total = time.monotonic() - started
        return (begin if begin is not None else 0.0), total * 1.2

    def phase(self) -> str:
        try:
            flight = json.loads((self.state / "state.json").read_bytes()).get("in_flight")
        except (OSError, ValueError):
            return "start"
        return str(flight["phase"]) if flight else "no update in flight"

    def current_commit(self) -> str | None:
        try:
            return os.readlink(self.state / "current").rsplit("-", 1)[-1]
        except OSError:
            return None


def check(device: Device, old: str, new: str, healthy: bool) -> list[str]:
    """What is wrong after the trial (nothing, when all is well)."""
    problems = []
    state_file = device.state / "state.json"
    try:
        state = json.loads(state_file.read_bytes())
    except (OSError, ValueError) as exc:
        return [f"state file does not parse: {exc}"]
    if list(device.state.glob("state.json.corrupt-*")):
        problems.append("an unreadable state file was put aside")
    for number, line in enumerate((device.state / "history.jsonl").read_bytes().splitlines()):
        try:
            json.loads(line)
        except ValueError:
            problems.append(f"history line {number + 1} is torn: {line[:80]!r}")
    current = device.current_commit()
    allowed = (old, new) if healthy else (old,)
    if current is None or not any(c.startswith(current) for c in allowed):
        problems.append(f"current is {current}, expected one of {[c[:12] for c in allowed]}")
    running = device.out.read_text().split() if device.out.exists() else []
    if current is None or len(running) < 2 or not running[1].startswith(current):
        problems.append(f"the running release {running} is not the current one {current}")
    if state.get("status") != "healthy":
        problems.append(f"status is {state.get('status')}: {state.get('status_reason')}")
    if state.get("in_flight"):
        problems.append(f"an update is still in flight: {state['in_flight'].get('phase')}")
    staging = device.state / "staging"
    if staging.exists() and any(staging.iterdir()):
        problems.append("staging leftovers")
    return problems


def run(trials: int = 1000, seed: int = 7, log: bool = True) -> dict[str, object]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="fleetcore-cuts-") as tmp:
        root = Path(tmp)
        repo = FleetRepo.create(root / "fleet")
        device = Device(root / "device", repo)
        repo.commit(release(rng, 0, healthy=True), "v0")
        assert device.run() == 0, "the first install failed"
        # How long an update takes here: kills are drawn over that span.
        repo.commit(release(rng, 1, healthy=True), "v1")
        begin, span = device.calibrate()
        bad: list[dict[str, object]] = []
        phases: dict[str, int] = {}
        began = time.monotonic()
        for trial in range(trials):
            old = device.current_commit() or ""
            healthy = rng.random() < 0.6
            new = repo.commit(release(rng, trial + 2, healthy), f"trial {trial}")
            # Most cuts inside the update itself, some while the agent starts.
            phase = device.cut(rng.uniform(begin if rng.random() < 0.8 else 0, span))
            phases[phase] = phases.get(phase, 0) + 1
            if rng.random() < 0.5:  # the power goes again while it recovers
                again = device.cut(rng.uniform(begin * 0.8, span))
                key = f"recovery: {again}"
                phases[key] = phases.get(key, 0) + 1
            device.run()
            problems = check(device, old, new, healthy)
            if problems:
                bad.append({"trial": trial, "cut": phase, "problems": problems})
                if log:
                    print(f"trial {trial}: BAD after a cut in {phase}: {problems}", flush=True)
            elif log and (trial + 1) % 50 == 0:
                rate = (trial + 1) / (time.monotonic() - began)
                print(f"{trial + 1} trials, {len(bad)} bad, {rate:.2f} trials/s", flush=True)
        elapsed = time.monotonic() - began
    return {
        "trials": trials,
        "bad": len(bad),
        "bad_trials": bad[:20],
        "seconds": round(elapsed, 1),
        "trials_per_second": round(trials / elapsed, 3) if elapsed else None,
        "cut_in_phase": dict(sorted(phases.items(), key=lambda kv: -kv[1])),
        "update_seconds": round(span / 1.2, 2),
        "update_begins_after_seconds": round(begin, 2),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.trials, args.seed, log=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0 if result["bad"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
