"""fleetcore.http against real local servers: plain HTTP and TLS (with a CA
and certificates made here), timeouts, redirects, errors."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleetcore.errors import FleetcoreError
from fleetcore.http import (
    BadResponse,
    Client,
    RedirectError,
    RequestError,
    StatusError,
    Timeout,
    TLSError,
    TransportError,
    redact,
)


class Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def log_message(self, *_args: Any) -> None:
        pass

    def _answer(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, "headers": dict(self.headers)})  # type: ignore[attr-defined]
        path = self.path.split("?")[0]
        if path == "/json":
            self._answer(200, b'{"ok": true}', {"Content-Type": "application/json"})
        elif self.path == "/big":
            self._answer(200, b"x" * 300_000)
        elif self.path == "/notjson":
            self._answer(200, b"<html>hello</html>")
        elif self.path == "/empty":
            self._answer(204)
        elif self.path.startswith("/redirect"):
            self._answer(302, headers={"Location": "/json"})
        elif self.path == "/away":
            self._answer(302, headers={"Location": "https://u:pw@elsewhere.example/x"})
        elif path == "/missing":
            body = json.dumps({"error": "no such thing\n at all", "field": "x"}).encode()
            self._answer(404, body, {"Content-Type": "application/json"})
        elif self.path == "/boom":
            self._answer(500, b"Traceback " + b"y" * 5000)
        elif self.path == "/etag":
            if self.headers.get("If-None-Match") == '"v1"':
                self._answer(304, headers={"ETag": '"v1"'})
            else:
                self._answer(200, b"{}", {"ETag": '"v1"'})
        elif self.path == "/slow":
            time.sleep(1.5)
            self._answer(200, b"late")
        elif self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"half")
            self.wfile.flush()
            time.sleep(1.5)
        else:
            self._answer(200, b"hello")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.seen.append(  # type: ignore[attr-defined]
            {"path": self.path, "headers": dict(self.headers), "body": body}
        )
        self._answer(200, json.dumps({"echo": json.loads(body)}).encode())


def serve(context: ssl.SSLContext | None = None) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    scheme = "https" if context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_port}", server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    yield from serve()


@pytest.fixture
def url(http_server: tuple[str, list[dict[str, Any]]]) -> str:
    return http_server[0]


# -- plain HTTP -------------------------------------------------------------------------------


def test_json_both_ways_and_headers(http_server) -> None:
    url, seen = http_server
    client = Client(url, headers={"User-Agent": "fleetcore-test/1"})
    assert client.get_json("/json") == {"ok": True}
    assert client.send_json("POST", "/echo", {"a": [1, 2]}) == {"echo": {"a": [1, 2]}}
    assert seen[0]["headers"]["User-Agent"] == "fleetcore-test/1"
    assert seen[1]["headers"]["Content-Type"] == "application/json"
    assert client.get_json("/empty") is None


def test_not_json_is_a_bad_response(url) -> None:
    with pytest.raises(BadResponse, match="not JSON") as err:
        Client(url).get_json("/notjson")
    assert err.value.excerpt == "<html>hello</html>"


def test_bodies_stream_in_chunks(url) -> None:
    with Client(url).request("GET", "/big") as response:
        sizes = [len(chunk) for chunk in response.iter_bytes(65536)]
    assert sum(sizes) == 300_000 and max(sizes) <= 65536 and len(sizes) >= 5


def test_304_is_an_answer_not_an_error(url) -> None:
    client = Client(url)
    with client.request("GET", "/etag") as first:
        etag = first.headers["ETag"]
    with client.request("GET", "/etag", headers={"If-None-Match": etag}) as second:
        assert second.status == 304 and second.read() == b""


def test_an_error_status_names_url_status_and_a_short_excerpt(url) -> None:
    client = Client(url)
    with pytest.raises(StatusError) as err:
        client.get_json("/missing")
    e = err.value
    assert isinstance(e, RequestError) and isinstance(e, FleetcoreError)
    assert e.status == 404 and e.url == f"{url}/missing"
    assert e.json() == {"error": "no such thing\n at all", "field": "x"}
    excerpt = '{"error": "no such thing\\n at all", "field": "x"}'
    assert str(e) == f"GET {url}/missing: HTTP 404 Not Found: {excerpt}"
    with pytest.raises(StatusError) as err:
        client.request("GET", "/boom")
    assert err.value.status == 500 and len(err.value.body) == 5010
    assert "\n" not in str(err.value) and len(err.value.excerpt) == 200
    assert err.value.excerpt.endswith("...")


def test_an_error_status_can_be_returned(url) -> None:
    with Client(url).request("GET", "/missing", raise_for_status=False) as response:
        assert response.status == 404 and b"no such thing" in response.read()


def test_a_redirect_is_refused_by_default_naming_where_it_leads(http_server) -> None:
    url, seen = http_server
    client = Client(url)
    with pytest.raises(RedirectError) as err:
        client.request("GET", "/redirect", headers={"Authorization": "Bearer t0ken"})
    assert err.value.status == 302 and err.value.location == f"{url}/json"
    assert str(err.value) == (
        f"GET {url}/redirect was redirected (HTTP 302) to {url}/json; redirects are not followed"
    )
    assert [s["path"] for s in seen] == ["/redirect"]
    # Credentials in the location are hidden too.
    with pytest.raises(RedirectError) as err:
        client.request("GET", "/away")
    assert err.value.location == "https://***@elsewhere.example/x"
    assert "pw" not in str(err.value)


def test_a_redirect_returned_or_followed_when_asked(http_server) -> None:
    url, seen = http_server
    client = Client(url)
    with client.request("GET", "/redirect", redirects="return") as response:
        assert response.status == 302 and response.headers["Location"] == "/json"
    token = {"Authorization": "Bearer t0ken", "X-Vault-Token": "s.x"}
    with Client(url, redirects="follow").request("GET", "/redirect", headers=token) as response:
        assert response.status == 200 and response.url == f"{url}/json"
        assert response.json() == {"ok": True}
    first, followed = seen[-2:]
    assert first["headers"]["Authorization"] == "Bearer t0ken"
    assert first["headers"]["X-Vault-Token"] == "s.x"
    # Credentials never go along to where a redirect leads.
    assert "Authorization" not in followed["headers"]
    assert "X-Vault-Token" not in followed["headers"]


def test_credentials_in_the_url_are_basic_auth_and_never_shown(http_server) -> None:
    url, seen = http_server
    with_creds = url.replace("http://", "http://deploy:s3cr%40t@")
    assert Client().get_json(f"{with_creds}/json") == {"ok": True}
    assert seen[0]["headers"]["Authorization"] == "Basic ZGVwbG95OnMzY3JAdA=="
    with pytest.raises(StatusError) as err:
        Client().request("GET", f"{with_creds}/missing?token=abc")
    assert "s3cr" not in str(err.value) and "abc" not in str(err.value)
    assert err.value.url == url.replace("http://", "http://***@") + "/missing?token=***"


def test_redact() -> None:
    assert redact("see https://u:p@host/x?a=1&private_token=zz") == (
        "see https://***@host/x?a=1&private_token=***"
    )
    assert redact("http://host/path") == "http://host/path"


def test_a_slow_answer_times_out(url) -> None:
    started = time.monotonic()
    with pytest.raises(Timeout) as err:
        Client(url, timeout=0.3).request("GET", "/slow")
    assert time.monotonic() - started < 1.2
    assert isinstance(err.value, TransportError)
    assert str(err.value) == f"GET {url}/slow failed: timed out"
    # The per-request timeout wins over the client's.
    with Client(url, timeout=0.1).request("GET", "/slow", timeout=5) as response:
        assert response.read() == b"late"


def test_a_stalled_body_times_out_while_reading(url) -> None:
    with Client(url, timeout=0.3).request("GET", "/stall") as response:
        assert response.read(4) == b"half"
        with pytest.raises(Timeout):
            response.read()


def test_refused_connection_is_a_transport_error(closed_port_url: str) -> None:
    with pytest.raises(TransportError) as err:
        Client(closed_port_url, timeout=2).request("GET", "/x")
    assert isinstance(err.value.reason, ConnectionRefusedError)
    assert err.value.status is None
    assert str(err.value).startswith(f"GET {closed_port_url}/x failed: ")
    assert "refused" in str(err.value)


def test_only_http_urls() -> None:
    with pytest.raises(TransportError, match="only http:// and https://"):
        Client().request("GET", "file:///etc/passwd")


@pytest.fixture
def closed_port_url() -> str:
    from fleetcore.testing.services import free_port

    return f"http://127.0.0.1:{free_port()}"


# -- TLS --------------------------------------------------------------------------------------


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA; a server certificate for 127.0.0.1 and a client certificate it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (folder / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def builder(subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> Any:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("fleetcore test CA", name("fleetcore test CA"), ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write("ca", ca, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        builder("127.0.0.1", ca.subject, server_key)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write("server", server, server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = builder("device-1", ca.subject, client_key).sign(ca_key, hashes.SHA256())
    write("client", client, client_key)
    return {p.name: p for p in folder.iterdir()}


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[tuple[str, dict[str, Path]]]:
    certs = _certificates(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs["server.pem"], certs["server.key"])
    context.load_verify_locations(certs["ca.pem"])
    context.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, when sent, must verify
    for url, _seen in serve(context):
        yield url, certs


def test_tls_with_the_ca_file(tls) -> None:
    url, certs = tls
    assert Client(url, ca_file=certs["ca.pem"]).get_json("/json") == {"ok": True}


def test_tls_verification_fails_without_the_ca(tls) -> None:
    url, _certs = tls
    with pytest.raises(TLSError) as err:
        Client(url, timeout=5).request("GET", "/json")
    assert isinstance(err.value, TransportError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)
    assert str(err.value).startswith(f"GET {url}/json failed: ")


def test_tls_verification_can_be_turned_off(tls) -> None:
    url, _certs = tls
    assert Client(url, verify=False).get_json("/json") == {"ok": True}


def test_tls_with_a_client_certificate(tls) -> None:
    url, certs = tls
    client = Client(
        url,
        ca_file=certs["ca.pem"],
        client_cert=certs["client.pem"],
        client_key=certs["client.key"],
    )
    assert client.get_json("/json") == {"ok": True}


def test_importing_it_loads_no_http_machinery() -> None:
    """Plugins import it at load time on small devices: urllib and ssl wait
    for the first client."""
    code = (
        "import sys, fleetcore.http\n"
        "print(sorted({'urllib.request', 'ssl', 'http.client'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
