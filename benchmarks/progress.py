"""The server's fleet-wide passes, timed on a large fleet.

    python benchmarks/progress.py [--devices 30000] [--repeat 3]

A rollout's progress (``GET /v1/rollouts/{id}``, the engine's tick, the
rollout page) and the fleet status (``fleetcore fleet status``, the
dashboard's overview) each go over every device. This builds a server on
SQLite in this process, writes ``--devices`` device rows straight into its
database (5% canary, 15% early, 80% general, all healthy on v1), starts a
canary rollout of v2 (the devices stay on v1) and times, at each of its three steps:

- the rollout's progress as ``GET /v1/rollouts/{id}`` answers it,
- the fleet status,
- an engine tick (it judges the step; an hour's wait keeps it from
  promoting),
- one device's desired state computed in full (what every device woken
  by an event asks for), the mean over 2,000 devices in µs,
- then, at the first two steps, an operator's ``promote``, which tells
  every device whose desired state moved.

Each figure is the best of ``--repeat`` calls, in milliseconds of wall
time on an otherwise idle process (no HTTP, no other load), written to
benchmarks/results/progress.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetcore.server import bodies as b
from fleetcore.server import engine
from fleetcore.server import schema as t
from fleetcore.server.app import ServerConfig, build
from fleetcore.server.auth import Operator
from fleetcore.testing.gitrepo import FleetRepo

SEGMENTS = ["canary"] * 5 + ["early"] * 15 + ["general"] * 80


def best_ms(call: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def mean_us(call: Callable[[str], Any], ids: list[str]) -> float:
    call(ids[0])  # the fleet-wide part, read once per generation, not timed
    started = time.perf_counter()
    for device_id in ids:
        call(device_id)
    return round((time.perf_counter() - started) / len(ids) * 1e6)


def run(devices: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fleetcore-progress-") as tmp:
        root = Path(tmp)
        repo = FleetRepo.create(root / "repo")
        v1 = repo.commit({"roles/web/activate.sh": "#!/bin/sh\necho 1\n"}, "v1")
        v2 = repo.commit({"roles/web/activate.sh": "#!/bin/sh\necho 2\n"}, "v2")
        _, ctl = build(
            ServerConfig(
                data_dir=root / "data", repo=repo.url, tick_interval=3600.0, fetch_interval=3600.0
            )
        )
        now = ctl.ts()
        with ctl.store.begin() as conn:
            conn.execute(
                t.devices.insert(),
                [
                    {
                        "device_id": f"sim-{i:06d}",
                        "role": "web",
                        "segment": SEGMENTS[i % len(SEGMENTS)],
                        "enrolled_at": now,
                        "last_seen": now,
                        "status": "healthy",
                        "commit": v1,
                        "credential_hash": f"unused-{i}",
                        "pending": False,
                    }
                    for i in range(devices)
                ],
            )
        admin = Operator("benchmark", "admin")
        # An hour's wait: the engine's ticks judge the step, never promote it.
        request = b.RolloutRequest(commit=v2, strategy="canary", role="web", wait_seconds=3600)
        rollout_id = ctl.start_rollout(admin, request)["id"]
        # Every 7th device up to 2,000: all three segments.
        sample = [f"sim-{i:06d}" for i in range(0, devices, 7)][:2000]
        steps = []
        for step in range(3):
            figures: dict[str, Any] = {
                "step": step,
                "rollout_ms": best_ms(lambda: ctl.rollout(rollout_id), repeat),
                "fleet_status_ms": best_ms(ctl.fleet_status, repeat),
                "engine_tick_ms": best_ms(lambda: engine.tick(ctl), repeat),
                "desired_state_us": mean_us(ctl.states.desired, sample),
            }
            if step < 2:
                figures["promote_ms"] = best_ms(
                    lambda: ctl.rollout_action(admin, rollout_id, "promote", "benchmark"), 1
                )
            steps.append(figures)
            print(json.dumps(figures), flush=True)
    return {"devices": devices, "steps": steps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=30000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = run(args.devices, args.repeat)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "progress.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
