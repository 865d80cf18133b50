"""Freeze protection in managed mode: a device handed the same old desired
state (a proxy or an attacker replaying the server's past answer) reports
``stale_desired_state`` once the answer's server time is older than
``[server] max_desired_age``."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import requests
from tests.test_managed import FLEETCORE, ControlServer, ManagedDevice, everyone, server  # noqa: F401


class Replayer(http.server.ThreadingHTTPServer):
    """Forwards everything to the real server, except that once it has seen
    one desired state it answers every later poll with that same answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.recorded: tuple[int, dict[str, str], bytes] | None = None
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Replayer

    def log_message(self, *args: Any) -> None:
        pass

    def _forward(self) -> None:
        replayer = self.server
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        desired = self.command == "GET" and self.path.endswith("/desired")
        if desired and replayer.recorded is not None:
            status, headers, content = replayer.recorded
        else:
            sent = {k: v for k, v in self.headers.items() if k.lower() not in ("host",)}
            if desired:
                sent.pop("If-None-Match", None)  # record a full answer
            r = requests.request(
                self.command, replayer.upstream + self.path, headers=sent, data=body, timeout=30
            )
            status, content = r.status_code, r.content
            headers = {
                k: v
                for k, v in r.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            if desired and status == 200:
                replayer.recorded = (status, headers, content)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_DELETE = _forward


def test_a_replayed_desired_state_is_reported_stale(server: ControlServer, tmp_path: Path) -> None:  # noqa: F811
    replayer = Replayer(server.url)
    thread = threading.Thread(target=replayer.serve_forever, daemon=True)
    thread.start()
    try:
        proxied = type("Proxied", (), {"url": replayer.url, "enrollment": server.enrollment})()
        device = ManagedDevice(
            tmp_path, proxied, "pi-stale", "general", server_extra='max_desired_age = "3s"'
        )
        everyone(server, server.repo.head())

        def status() -> dict[str, Any]:
            out = subprocess.run(
                [*FLEETCORE, "agent", "status", "--json", "--config", str(device.config)],
                capture_output=True,
                text=True,
                env=device.env,
            )
            data: dict[str, Any] = json.loads(out.stdout)
            return data

        assert device.once() == 0
        assert status()["status"] == "healthy"
        assert status()["desired_issued_at"] is not None
        time.sleep(4)  # the replayed answer's server time ages past the bound
        device.once()
        seen = status()
        assert seen["status"] == "stale_desired_state", seen
        assert "max_desired_age" in seen["status_reason"]
        # The server hears it too, with the reason.
        deadline = time.monotonic() + 30
        while True:
            d = server.api("GET", "/v1/devices/pi-stale").json()
            if d["status"] == "stale_desired_state":
                break
            assert time.monotonic() < deadline, d
            device.once()
            time.sleep(0.5)
        assert "replayed" in (d["current_error"] or "")
    finally:
        replayer.shutdown()


def test_a_git_only_device_on_an_old_head_reports_it(device: Any, fleet_repo: Any) -> None:
    """``[verify] max_age``: the head's commit time (the repo helper dates its
    commits at the start of 2026) against the bound."""
    from fleetcore.agent.report import status_report
    from fleetcore.config.agent import load_agent_config
    from fleetcore.testing.gitrepo import script_role

    v1 = fleet_repo.commit(script_role("v1"), "v1")
    fresh = device("pi-fresh", extra='[verify]\nmax_age = "3650d"\n')
    stale = device("pi-stale", extra='[verify]\nmax_age = "1d"\n')
    for dev in (fresh, stale):
        assert dev.agent().once().commit == v1
    assert status_report(load_agent_config(fresh.config_path))["status"] == "healthy"
    report = status_report(load_agent_config(stale.config_path))
    assert report["status"] == "stale_desired_state"
    assert "[verify] max_age" in report["status_reason"]
    assert report["desired_issued_at"].startswith("2026-01-01")
