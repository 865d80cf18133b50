"""A real Prometheus Alertmanager for tests: Debian's ``prometheus-alertmanager``
on a loopback port, with a throw-away config and storage.

>>> am = Alertmanager.start()      # None when Alertmanager is not installed
>>> am.url                         # http://127.0.0.1:PORT
>>> am.channel_url                 # alertmanager://127.0.0.1:PORT (for --alerts)
>>> am.alerts()                    # GET /api/v2/alerts: the active alerts
>>> am.wait_for(lambda a: a["labels"]["alertname"] == "rollout-halted")
>>> am.stop()

Its one receiver does nothing (no mail, no webhook): the tests read what
arrived through the API. Clustering is off, so it opens no other port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetcore.http import Client, RequestError
from fleetcore.testing.services import free_port, wait_for_port

CONFIG = """\
route:
  receiver: nobody
  group_wait: 1s
receivers:
  - name: nobody
"""


def binary() -> str | None:
    return (
        shutil.which("prometheus-alertmanager")
        or shutil.which("alertmanager")
        or next((p for p in ("/usr/bin/prometheus-alertmanager",) if os.access(p, os.X_OK)), None)
    )


class Alertmanager:
    def __init__(self, root: Path, port: int, exe: str) -> None:
        self.root = root
        self.port = port
        self.exe = exe
        self.url = f"http://127.0.0.1:{port}"
        self.channel_url = f"alertmanager://127.0.0.1:{port}"
        self.config = root / "alertmanager.yml"
        self.log = root / "alertmanager.log"
        self.config.write_text(CONFIG)
        self.proc: subprocess.Popen[bytes] | None = None
        self._client = Client(self.url, timeout=5, proxies=False)

    @classmethod
    def start(cls) -> Alertmanager | None:
        exe = binary()
        if exe is None:
            return None
        root = Path(tempfile.mkdtemp(prefix="fleetcore-alertmanager-"))
        am = cls(root, free_port(), exe)
        am.run()
        return am

    def run(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    f"--config.file={self.config}",
                    f"--storage.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_for_port(self.port, 30) or not self._ready(30):
            tail = self.log.read_text()[-2000:]
            self.stop()
            raise RuntimeError(f"Alertmanager did not start: {tail}")

    def _ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(RequestError),
                self._client.request("GET", "/-/ready", timeout=2),
            ):
                return True
            time.sleep(0.1)
        return False

    def alerts(self, active_only: bool = True) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds (``GET /api/v2/alerts``)."""
        query = "" if active_only else "?active=true&unprocessed=true&inhibited=true"
        found: list[dict[str, Any]] = self._client.get_json(f"/api/v2/alerts{query}")
        return found

    def wait_for(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any] | None:
        """The first active alert ``match`` accepts, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            hit = next((a for a in self.alerts() if match(a)), None)
            if hit is not None or time.monotonic() > deadline:
                return hit
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)
