"""The fault proxy of fleetcore.testing, each fault against a real HTTP server
and the project's HTTP client: what a client sees is what the proxy claims."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from fleetcore.http import Client, Timeout, TransportError
from fleetcore.testing.faultproxy import Fault, FaultProxy

BODY = bytes(range(256)) * 1024  # 256 KiB


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy(("127.0.0.1", server.server_address[1])) as p:
        yield p
    server.shutdown()


def fetch(proxy: FaultProxy, **kwargs: float) -> bytes:
    with Client(proxy.url, timeout=2, proxies=False).request("GET", "/x", **kwargs) as response:
        return b"".join(response.iter_bytes())


def test_a_healthy_network_passes_every_byte(proxy) -> None:
    assert fetch(proxy) == BODY
    assert proxy.connections == 1 and proxy.seen(b"GET /x")


def test_a_cut_answer_is_an_error_not_a_short_body(proxy) -> None:
    proxy.fault = Fault.cut(after=100_000, times=1)
    with pytest.raises(TransportError, match="bytes of the body still to come"):
        fetch(proxy)
    assert fetch(proxy) == BODY  # `times=1`: the next one passes


@pytest.mark.parametrize("fault", [Fault.reset(), Fault.garbage(64), Fault.refuse()])
def test_resets_garbage_and_refusals_are_transport_errors(proxy, fault) -> None:
    proxy.fault = fault
    with pytest.raises(TransportError):
        fetch(proxy)


def test_a_black_hole_times_out(proxy) -> None:
    proxy.fault = Fault.blackhole()
    with pytest.raises(Timeout):
        fetch(proxy)


def test_a_deadline_ends_a_trickling_answer(proxy) -> None:
    # Each read gets a byte well within the 2 s timeout: only the deadline ends it.
    proxy.fault = Fault.slow(0.2)
    with pytest.raises(Timeout, match="no complete answer within 3s"):
        fetch(proxy, deadline=3.0)


def test_match_limits_a_fault_to_some_requests(proxy) -> None:
    proxy.fault = Fault.reset(match=b"/other")
    assert fetch(proxy) == BODY
    proxy.fault = Fault.latency(0.01)
    assert fetch(proxy) == BODY
