"""A TCP proxy that breaks the network on purpose, for tests.

Put it between an agent and whatever it talks to (the control server, a git
daemon, a tarball host, an MQTT broker) and choose how the network misbehaves::

    from fleetcore.testing.faultproxy import Fault, FaultProxy

    with FaultProxy(("127.0.0.1", server_port)) as proxy:
        agent_config_url = proxy.url            # http://127.0.0.1:<proxy port>
        proxy.fault = Fault.cut(after=65536, times=1)  # the next big answer is cut
        ...
        proxy.fault = Fault.blackhole()         # accept, never answer
        ...
        proxy.fault = Fault.none()              # a healthy network again

The faults, each applied to connections opened after it is set:

- ``Fault.none()``: bytes pass untouched.
- ``Fault.latency(seconds)``: every piece of the answer waits ``seconds``.
- ``Fault.cut(after=N)``: the answer is cut (a clean close, as a dropped link
  looks to the client) after ``N`` bytes.
- ``Fault.reset()``: the connection is reset (RST) as soon as the request arrives.
- ``Fault.blackhole()``: the connection is accepted, the request read, nothing
  ever answered (a server that hangs, a firewall that drops).
- ``Fault.slow(seconds)``: the answer trickles one byte every ``seconds``
  (slow-loris): every read gets a byte before any per-read timeout.
- ``Fault.garbage(size)``: ``size`` random bytes instead of an answer.
- ``Fault.refuse()``: nothing listens (connections are refused).

``times=N`` limits a fault to the next N connections it takes effect on (for
``cut``: N cuts), after which bytes pass again. ``proxy.connections`` counts
connections; ``proxy.requests`` keeps when each came and its first bytes (the
request line and headers, for HTTP), and ``proxy.seen(b"Range: ")`` picks some
out, to see e.g. that a download resumed. ``match=b"..."`` limits any fault to
connections whose first bytes contain it (``Fault.cut(after=0,
match=b"/history")`` cuts only the answers to history uploads).
``proxy.drop_all()`` cuts every open connection at once (a long event stream).

It is plain threads and sockets (no asyncio), so a test drives it from any
thread and it works for any protocol over TCP.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import threading
import time
from typing import Literal

from attrs import frozen

Kind = Literal["none", "latency", "cut", "reset", "blackhole", "slow", "garbage", "refuse"]
HEAD_LIMIT = 8192


@frozen(kw_only=True)
class Fault:
    """What the network does to the connections the proxy takes next."""

    kind: Kind = "none"
    seconds: float = 0.0
    after: int = 0
    size: int = 0
    times: int | None = None
    """Connections (or cuts) it applies to; None: all of them."""
    match: bytes | None = None
    """Only connections whose first bytes contain this (e.g. ``b"/history"``)."""

    @classmethod
    def none(cls) -> Fault:
        return cls()

    @classmethod
    def latency(
        cls, seconds: float, *, times: int | None = None, match: bytes | None = None
    ) -> Fault:
        return cls(kind="latency", seconds=seconds, times=times, match=match)

    @classmethod
    def cut(cls, *, after: int, times: int | None = None, match: bytes | None = None) -> Fault:
        return cls(kind="cut", after=after, times=times, match=match)

    @classmethod
    def reset(cls, *, times: int | None = None, match: bytes | None = None) -> Fault:
        return cls(kind="reset", times=times, match=match)

    @classmethod
    def blackhole(cls, *, times: int | None = None, match: bytes | None = None) -> Fault:
        return cls(kind="blackhole", times=times, match=match)

    @classmethod
    def slow(cls, seconds: float, *, times: int | None = None, match: bytes | None = None) -> Fault:
        return cls(kind="slow", seconds=seconds, times=times, match=match)

    @classmethod
    def garbage(
        cls, size: int = 512, *, times: int | None = None, match: bytes | None = None
    ) -> Fault:
        return cls(kind="garbage", size=size, times=times, match=match)

    @classmethod
    def refuse(cls) -> Fault:
        return cls(kind="refuse")


@frozen
class Seen:
    """A connection the proxy took: when (``time.monotonic()``), and its first bytes."""

    at: float
    head: bytes


class FaultProxy:
    """Forwards ``listen`` (a free loopback port by default) to ``target``,
    with the current :attr:`fault` applied."""

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0):
        self.target = target
        self.host = host
        self._port = port
        self._fault = Fault()
        self._left: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self.connections = 0
        self.requests: list[Seen] = []

    # -- the test's side ------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def fault(self) -> Fault:
        return self._fault

    @fault.setter
    def fault(self, fault: Fault) -> None:
        with self._lock:
            self._fault, self._left = fault, fault.times
        if fault.kind == "refuse":
            self._close_listener()
        elif self._server is None and not self._stop.is_set() and self._port:
            self._listen()

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._close_listener()
        with self._lock:
            for sock in list(self._open):
                _close(sock)
            self._open.clear()

    def drop_all(self) -> None:
        """Cut every open connection now (e.g. a long-lived event stream)."""
        with self._lock:
            for sock in list(self._open):
                _close(sock)
            self._open.clear()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- plumbing -----------------------------------------------------------------------

    def _listen(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((self.host, self._port))
        server.listen(64)
        self._port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            _close(server)

    def _take(self, head: bytes) -> Fault:
        """The fault for a new connection whose first bytes are ``head``,
        counting down ``times``."""
        with self._lock:
            fault = self._fault
            if fault.match is not None and fault.match not in head:
                return Fault()
            if fault.kind in ("none", "cut", "refuse"):
                return fault  # a cut is counted when it happens
            if self._left is not None:
                if self._left <= 0:
                    return Fault()
                self._left -= 1
            return fault

    def _count_cut(self) -> bool:
        with self._lock:
            if self._fault.kind != "cut":
                return False
            if self._left is not None:
                if self._left <= 0:
                    return False
                self._left -= 1
            return True

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            # The request's first bytes decide the fault (``match``); a
            # protocol whose server speaks first sends nothing, so wait briefly.
            ready, _, _ = select.select([client], [], [], 1.0)
            head = client.recv(HEAD_LIMIT) if ready else b""
            self._record(head)
            fault = self._take(head)
            if fault.kind in ("reset", "blackhole", "garbage"):
                if fault.kind == "reset":
                    # SO_LINGER 0: close sends RST, not FIN.
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.close()
                elif fault.kind == "garbage":
                    client.sendall(os.urandom(fault.size))
                else:
                    while not self._stop.is_set() and client.recv(HEAD_LIMIT):
                        pass  # swallow whatever comes, answer nothing
                return
            upstream = socket.create_connection(self.target, timeout=30)
            upstream.settimeout(None)
            with self._lock:
                self._open.add(upstream)
            if head:
                upstream.sendall(head)
            threading.Thread(target=self._upward, args=(client, upstream), daemon=True).start()
            self._downward(upstream, client, fault)
        except OSError:
            pass
        finally:
            _close(client)
            if upstream is not None:
                _close(upstream)
            with self._lock:
                self._open.discard(client)
                if upstream is not None:
                    self._open.discard(upstream)

    def _upward(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)

    def _downward(self, upstream: socket.socket, client: socket.socket, fault: Fault) -> None:
        sent = 0
        while data := upstream.recv(65536):
            if fault.kind == "latency":
                time.sleep(fault.seconds)
            if fault.kind == "cut" and sent + len(data) > fault.after and self._count_cut():
                client.sendall(data[: max(0, fault.after - sent)])
                return  # the caller closes both ends: a clean close mid-answer
            if fault.kind == "slow":
                for i in range(len(data)):
                    if self._stop.wait(fault.seconds):
                        return
                    client.sendall(data[i : i + 1])
            else:
                client.sendall(data)
            sent += len(data)

    def _record(self, data: bytes) -> None:
        with self._lock:
            self.requests.append(Seen(at=time.monotonic(), head=data[:HEAD_LIMIT]))

    def seen(self, part: bytes) -> list[Seen]:
        """The connections whose first bytes contain ``part``, oldest first."""
        with self._lock:
            return [r for r in self.requests if part in r.head]


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
