"""A real ``fleetcore server run`` process on loopback, for tests and benchmarks
that need the server as users run it (its own process, its own CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from fleetcore.testing.services import free_port, wait_for_port

FLEETCORE = (sys.executable, "-m", "fleetcore")


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        repo: str | Path,
        *,
        db_url: str | None = None,
        port: int | None = None,
        extra: tuple[str, ...] = (),
        log: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.repo = str(repo)
        self.db = ("--db", db_url) if db_url else ()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.log = log or self.data_dir.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._admin: str | None = None

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [*FLEETCORE, "server", *args, "--data-dir", str(self.data_dir), *self.db],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return out.stdout.strip()

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*FLEETCORE, "--log-level", "WARNING", "server", "run",
                 "--data-dir", str(self.data_dir), "--repo", self.repo,
                 "--listen", f"127.0.0.1:{self.port}", *self.db, *self.extra],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        if not wait_for_port(self.port, timeout):
            self.stop()
            raise RuntimeError(f"the server did not start; see {self.log}")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def admin_token(self) -> str:
        if self._admin is None:
            self._admin = self.cli("token", "create", "--role", "admin")
        return self._admin

    def enrollment_token(self) -> str:
        return self.cli("enrollment-token")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", f"Bearer {self.admin_token()}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def rollout_ended(self, rollout_id: int, timeout: float = 30.0) -> dict[str, Any]:
        """The rollout once it is no longer running. Simulated devices
        converge as soon as its last step has reached them; the engine ends
        it after that step's wait."""
        deadline = time.monotonic() + timeout
        while (rollout := self.api("GET", f"/v1/rollouts/{rollout_id}"))["state"] == "running":
            if time.monotonic() > deadline:
                raise AssertionError(f"rollout {rollout_id} still running after {timeout:.0f} s")
            time.sleep(0.5)
        return dict(rollout)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (from /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
