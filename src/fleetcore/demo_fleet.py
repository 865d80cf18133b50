"""``fleetcore demo``: a managed fleet on one machine, for real.

A control server (SQLite in a temporary folder), a generated fleet repo, and
six real agents (``fleetcore agent run`` processes, the script activator, no
Docker needed) in three segments: one canary, two early, three general. A new
commit is rolled out with the canary strategy; the demo prints each device
taking it, segment after segment, and the dashboard's address, then waits
for Ctrl-C and stops everything cleanly.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.services import free_port, wait_for_port

FLEETCORE = [sys.executable, "-m", "fleetcore"]
DEVICES = {
    "pi-canary-1": "canary",
    "pi-early-1": "early",
    "pi-early-2": "early",
    "pi-general-1": "general",
    "pi-general-2": "general",
    "pi-general-3": "general",
}

ROLE = {
    "roles/sensor/activate.sh": """#!/bin/sh
# Starts this release: here, it records which release runs.
echo "$FLEETCORE_COMMIT" > "$FLEETCORE_STATE_DIR/running"
""",
    "roles/sensor/health.sh": """#!/bin/sh
test "$(cat "$FLEETCORE_STATE_DIR/running")" = "$FLEETCORE_COMMIT"
""",
    "roles/sensor/role.toml": '[health]\nsettle = "1s"\n',
    "fleet.toml": "# policy comes from the control server in managed mode\n",
}

AGENT = """\
device_id = "{device_id}"
role = "sensor"
segment = "{segment}"
state_dir = "{state}"
update_interval = "30s"

[server]
url = "{url}"
report_interval = "2s"

[throttle]
min_interval = "0s"
failure_pause = "0s"
max_per_hour = 100
"""


class FleetDemo:
    def __init__(self, root: Path, echo: Callable[[str], None] = print) -> None:
        self.root = root
        self.echo = echo
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.repo = FleetRepo.create(root / "fleet")
        self.admin = ""

    def run(self, wait: bool) -> int:
        self.step("A fleet repo with one role, and a control server")
        self.repo.commit({**ROLE, "roles/sensor/config.txt": "sample_rate=1\n"}, "sensor v1")
        data = self.root / "server"
        self.admin = self.server_cli("token", "create", "--role", "admin", data=data)
        enrollment = self.server_cli("enrollment-token", data=data)
        self.spawn(
            [
                *FLEETCORE,
                "server",
                "run",
                "--data-dir",
                str(data),
                "--repo",
                str(self.repo.path),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            "server",
        )
        if not wait_for_port(self.port, timeout=30):
            raise SystemExit("the control server did not start; see server.log")
        self.echo(f"  server:    {self.url}  (SQLite in {data})")

        self.step("Six devices enroll and start their agents")
        for device_id, segment in DEVICES.items():
            home = self.root / device_id
            home.mkdir()
            config = home / "agent.toml"
            config.write_text(
                AGENT.format(
                    device_id=device_id, segment=segment, state=home / "state", url=self.url
                )
            )
            self.fleetcore(
                "agent", "enroll", "--config", str(config), "--enrollment-token", enrollment
            )
            self.spawn([*FLEETCORE, "agent", "run", "--config", str(config)], device_id)
            self.echo(f"  {device_id:<13} segment {segment}")

        v1 = self.repo.head()
        self.step(f"Everyone gets {v1[:12]} at once (a 100% rollout)")
        self.api(
            "POST",
            "/v1/rollouts",
            {
                "commit": v1,
                "strategy": "percentage",
                "steps": [{"options": {"percent": 100}, "wait_seconds": 0}],
            },
        )
        self.watch(v1, timeout=60)

        self.step("A new commit rolls out canary -> early -> general")
        v2 = self.repo.commit({"roles/sensor/config.txt": "sample_rate=10\n"}, "sensor v2")
        self.api("POST", "/v1/hooks/git", None)
        rollout = self.api(
            "POST", "/v1/rollouts", {"commit": v2, "strategy": "canary", "wait_seconds": 3}
        )
        self.echo(
            f"  rollout {rollout.get('id')}: canary, 3 s wait and a health gate between segments"
        )
        self.watch(v2, timeout=120)

        self.step("Have a look")
        self.echo(f"  dashboard: {self.url}/   (log in with the admin token below)")
        self.echo(f"  token:     {self.admin}")
        self.echo(f"  metrics:   {self.url}/metrics")
        self.echo(f"  operators: fleetcore fleet --server {self.url} --token <token> devices")
        if wait:
            self.echo("\nPress Ctrl-C to stop the server and the agents.")
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0

    def watch(self, commit: str, timeout: float) -> None:
        """Print each device as it reaches ``commit``, until all have."""
        started = time.monotonic()
        reached: set[str] = set()
        while time.monotonic() - started < timeout:
            for device_id, segment in DEVICES.items():
                running = self.root / device_id / "state" / "running"
                if (
                    device_id not in reached
                    and running.exists()
                    and running.read_text().strip() == commit
                ):
                    reached.add(device_id)
                    self.echo(
                        f"  +{time.monotonic() - started:5.1f}s  {device_id:<13} "
                        f"({segment}) runs {commit[:12]}"
                    )
            if len(reached) == len(DEVICES):
                return
            time.sleep(0.2)
        missing = ", ".join(sorted(set(DEVICES) - reached))
        raise SystemExit(f"not every device reached {commit[:12]} in {timeout:.0f} s: {missing}")

    def step(self, title: str) -> None:
        self.echo(f"\n== {title}")

    def server_cli(self, *args: str, data: Path) -> str:
        out = subprocess.run(
            [*FLEETCORE, "server", *args, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip().splitlines()[-1].strip()

    def fleetcore(self, *args: str) -> None:
        subprocess.run([*FLEETCORE, *args], capture_output=True, text=True, check=True)

    def spawn(self, argv: list[str], name: str) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log))

    def api(self, method: str, path: str, body: object) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the demo's own server
            f"{self.url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.admin}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else {}

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            if proc.poll() is None:
                proc.kill()


@contextlib.contextmanager
def workspace(path: Path | None, keep: bool) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="fleetcore-demo-")) if path is None else path
    root.mkdir(parents=True, exist_ok=True)
    try:
        yield root
    finally:
        if path is None and not keep:
            shutil.rmtree(root, ignore_errors=True)


def main(workdir: Path | None, keep: bool, wait: bool) -> int:
    with workspace(workdir, keep) as root:
        demo = FleetDemo(root)
        try:
            return demo.run(wait)
        finally:
            demo.stop()
            print("\nstopped the server and the agents" + (f"; kept {root}" if keep else ""))
