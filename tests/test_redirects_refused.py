"""The agent and the fleet CLI send their credentials to the configured server
only: a redirect is an error naming where it leads, never followed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fleetcore.agent.managed import ServerClient
from fleetcore.config.agent import AgentConfig, Server
from fleetcore.errors import FetchError


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_port}"


@pytest.fixture
def servers() -> Iterator[tuple[str, str, list[str]]]:
    """A server that redirects everything to another one, which records what reached it."""
    reached: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            reached.append(f"{self.path} {self.headers.get('Authorization')}")
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    elsewhere, elsewhere_url = _serve(Elsewhere)

    class Redirecting(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", elsewhere_url + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    redirecting, redirecting_url = _serve(Redirecting)
    try:
        yield redirecting_url, elsewhere_url, reached
    finally:
        for httpd in (redirecting, elsewhere):
            httpd.shutdown()
            httpd.server_close()


def test_the_agent_refuses_a_redirect(servers, tmp_path: Path) -> None:
    url, elsewhere, reached = servers
    (tmp_path / "credential").write_text("fcd_secret\n")
    client = ServerClient(
        AgentConfig(device_id="pi-1", role="web", state_dir=tmp_path, server=Server(url=url))
    )
    with pytest.raises(FetchError) as err:
        client.desired()
    message = str(err.value)
    assert f"redirected GET /v1/devices/pi-1/desired to {elsewhere}/v1/devices/pi-1/desired" in (
        message
    )
    assert "fcd_secret" not in message
    assert reached == []


def test_the_fleet_cli_refuses_a_redirect(servers) -> None:
    url, elsewhere, reached = servers
    result = subprocess.run(
        [sys.executable, "-m", "fleetcore", "fleet", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FLEETCORE_SERVER": url, "FLEETCORE_TOKEN": "fco_secret"},
    )
    assert result.returncode == 2, result.stderr
    assert f"the server at {url} redirected GET /v1/fleet/status to {elsewhere}" in result.stderr
    assert "fco_secret" not in result.stderr
    assert reached == []
