"""A newer agent and a server from before device metrics: the server refuses
keys it does not know, and the agent sends it the report without them.

The older server is a stand-in (a small HTTP server answering as releases
before the metric keys did: 400 ``unknown keys (...)``): that release cannot
run from this tree."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleetcore.agent.managed import NEWER_REPORT_KEYS, ServerClient, credential_path
from fleetcore.config.agent import load_agent_config


class OlderServer(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.bodies.append(body)
        unknown = sorted(k for k in body if k in NEWER_REPORT_KEYS)
        if unknown:
            answer = json.dumps({"error": f"unknown keys ({', '.join(unknown)})", "field": None})
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(answer.encode())
            return
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def older_server() -> Iterator[str]:
    OlderServer.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), OlderServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_an_older_server_gets_the_report_without_the_new_keys(
    older_server: str, tmp_path: Path
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'device_id = "pi-1"\nrole = "web"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[server]\nurl = "{older_server}"\n'
    )
    config = load_agent_config(path)
    credential = credential_path(config)
    credential.parent.mkdir(parents=True, exist_ok=True)
    credential.write_text("secret")
    report = {
        "status": "healthy",
        "cpu_percent": 5.0,
        "network_receive_bytes_per_second": 10.0,
        "network_transmit_bytes_per_second": 20.0,
    }
    ServerClient(config).report_status(report)
    first, second = OlderServer.bodies
    assert first == report
    assert second == {"status": "healthy", "cpu_percent": 5.0}
