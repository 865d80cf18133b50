from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fleetcore.config.convert import structure
from fleetcore.config.units import Duration
from fleetcore.errors import ConfigError
from fleetcore.plugin.types import Finding
from fleetcore.testing.contracts import check_check_record
from fleetcore.testing.services import free_port
from fleetcore_checks import http
from fleetcore_checks.http import Endpoint, HttpOptions


class Handler(BaseHTTPRequestHandler):
    routes = {"/health": 200, "/down": 503, "/ready": 204, "/missing": 404}

    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/down")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = self.routes.get(self.path, 404)
        body = b"" if status == 204 else f"status {status}\n".encode()
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections (the kernel does) but never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/health"


def record():
    (rec,) = http.fleetcore_register_health_checks()
    return rec


def run(check_ctx, options: HttpOptions) -> list[Finding]:
    return list(record().run(check_ctx("health", options)) or [])


def test_record_keeps_the_check_contract():
    options = check_check_record(record(), example={"url": "http://127.0.0.1:8080/health"})
    assert options == HttpOptions(url="http://127.0.0.1:8080/health")
    assert record().name == "http"


def test_applies_only_when_a_url_is_configured(check_ctx):
    rec = record()
    assert rec.applies is not None
    assert not rec.applies(check_ctx("health", HttpOptions()))
    assert rec.applies(check_ctx("health", HttpOptions(url="http://127.0.0.1:1/")))
    assert rec.applies(
        check_ctx("health", HttpOptions(endpoints=(Endpoint(url="http://127.0.0.1:1/"),)))
    )


def test_passes_on_200(check_ctx, server):
    assert run(check_ctx, HttpOptions(url=f"{server}/health")) == []


def test_fails_on_503_with_expected_and_found(check_ctx, server):
    url = f"{server}/down"
    findings = run(check_ctx, HttpOptions(url=url))
    assert findings == [Finding(message="wrong status", subject=url, expected="200", found="503")]
    assert str(findings[0]) == f"{url}: wrong status (expected 200, found 503)"


def test_another_expected_status(check_ctx, server):
    assert run(check_ctx, HttpOptions(url=f"{server}/ready", status=204)) == []
    assert run(check_ctx, HttpOptions(url=f"{server}/health", status=204)) == [
        Finding(message="wrong status", subject=f"{server}/health", expected="204", found="200")
    ]


def test_redirects_are_followed_and_the_final_status_counts(check_ctx, server):
    url = f"{server}/moved"
    assert run(check_ctx, HttpOptions(url=url)) == [
        Finding(message="wrong status", subject=url, expected="200", found="503")
    ]
    # Unless the redirect is what is expected.
    assert run(check_ctx, HttpOptions(url=url, status=302)) == []


def test_connection_refused(check_ctx):
    url = f"http://127.0.0.1:{free_port()}/health"
    assert run(check_ctx, HttpOptions(url=url)) == [
        Finding(message="connection refused", subject=url)
    ]


def test_a_server_that_never_answers_times_out(check_ctx, silent_server):
    began = time.monotonic()
    findings = run(check_ctx, HttpOptions(url=silent_server, timeout=Duration(0.3)))
    assert time.monotonic() - began < 3
    assert findings == [Finding(message="no answer within 0.3s", subject=silent_server)]


def test_several_endpoints_report_each_failure_with_its_url(check_ctx, server, silent_server):
    refused = f"http://127.0.0.1:{free_port()}/"
    options = structure(
        {
            "timeout": "300ms",
            "url": f"{server}/health",
            "endpoints": [
                {"url": f"{server}/ready", "status": 204},
                {"url": f"{server}/down"},
                {"url": refused},
                {"url": silent_server, "timeout": "0.2s"},
            ],
        },
        HttpOptions,
        source="role.toml",
    )
    assert [str(f) for f in run(check_ctx, options)] == [
        f"{server}/down: wrong status (expected 200, found 503)",
        f"{refused}: connection refused",
        f"{silent_server}: no answer within 0.2s",
    ]


def test_endpoints_inherit_the_table_status_and_timeout():
    options = HttpOptions(
        status=204,
        timeout=Duration(2.0),
        endpoints=(Endpoint(url="http://a/"), Endpoint(url="http://b/", status=200)),
    )
    assert options.targets() == [
        Endpoint(url="http://a/", status=204, timeout=Duration(2.0)),
        Endpoint(url="http://b/", status=200, timeout=Duration(2.0)),
    ]


def test_selected_without_a_url_is_a_finding(check_ctx):
    (finding,) = run(check_ctx, HttpOptions())
    assert "no url or endpoints configured" in finding.message


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            {"url": "127.0.0.1:8080/health"},
            "url must be an http:// or https:// URL, got '127.0.0.1:8080/health' @ health.http.url",
        ),
        ({"status": 999}, "status must be between 100 and 599, got 999 @ health.http.status"),
        (
            {"endpoints": [{"url": "http://x/"}, {"url": "http://y/", "status": 42}]},
            "status must be between 100 and 599, got 42 @ health.http.endpoints[1].status",
        ),
        ({"endpoints": [{"status": 200}]}, "required key missing @ health.http.endpoints[0].url"),
        ({"timeout": "0s"}, "timeout must be longer than 0s, got 0s @ health.http.timeout"),
        ({"urls": ["http://x/"]}, "unknown keys (urls) @ health.http"),
    ],
)
def test_option_errors_name_the_key(table, problem):
    with pytest.raises(ConfigError) as caught:
        structure(table, HttpOptions, source="roles/web/role.toml", root="health.http")
    assert caught.value.problems == (problem,)
