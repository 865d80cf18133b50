"""A real Prometheus for tests: Debian's ``prometheus`` on a loopback port,
scraping the given targets every second and evaluating the given rule files.

>>> prom = Prometheus.start(["127.0.0.1:8080"], rules=[Path("rules.yml")])
>>> prom.query('fleetcore_device_cpu_ratio{device="pi-1"}')   # the result vector
>>> prom.alerts()                                              # firing and pending
>>> prom.stop()

``start`` returns None when the binary is not installed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fleetcore.testing.services import free_port, wait_for_port


class Prometheus:
    def __init__(self, root: Path, port: int, exe: str) -> None:
        self.root = root
        self.port = port
        self.exe = exe
        self.url = f"http://127.0.0.1:{port}"
        self.log = root / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls, targets: Sequence[str], rules: Sequence[Path] = (), interval: str = "1s"
    ) -> Prometheus | None:
        exe = shutil.which("prometheus")
        if exe is None:
            return None
        root = Path(tempfile.mkdtemp(prefix="fleetcore-prometheus-"))
        prom = cls(root, free_port(), exe)
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(r) for r in rules],
            "scrape_configs": [
                {"job_name": "fleetcore-server", "static_configs": [{"targets": list(targets)}]}
            ],
        }
        # JSON is YAML: no YAML writer needed.
        (root / "prometheus.yml").write_text(json.dumps(config, indent=2))
        prom.run()
        return prom

    def run(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    f"--config.file={self.root / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_for_port(self.port, 30):
            self._fail(f"prometheus did not listen on {self.port}")
        # Listening is not ready: the API answers 503 while the TSDB opens.
        deadline = time.monotonic() + 60
        while not self._ready():
            if time.monotonic() > deadline:
                self._fail("prometheus did not get ready")
            time.sleep(0.2)

    def _fail(self, what: str) -> None:
        log = self.log.read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"{what}: {log}")

    def _ready(self) -> bool:
        try:
            ready = f"{self.url}/-/ready"  # always http://127.0.0.1
            with urllib.request.urlopen(ready, timeout=5) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback)
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now."""
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def wait_for(self, what: str, found: Callable[[], Any], timeout: float = 90) -> Any:
        """Poll until ``found()`` is truthy (scrapes and rule runs take a few seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            value = found()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus: no {what} after {timeout}s")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root, ignore_errors=True)
