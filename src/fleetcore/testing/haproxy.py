"""A real HAProxy in front of several server replicas, on loopback.

>>> lb = HAProxy.start([port1, port2, port3])   # None when haproxy is not installed
>>> lb.url                                      # http://127.0.0.1:PORT
>>> lb.stop()

Round robin over the replicas, each checked every half second on
``/v1/health``: a replica that stops answering is taken out within a second,
and a request whose connection it refused is sent to another (``redispatch``).
Long timeouts keep idle event streams open.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from fleetcore.testing.services import free_port, wait_for_port

CONFIG = """\
global
    maxconn {maxconn}

defaults
    mode http
    retries 3
    option redispatch
    option http-server-close
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    timeout http-keep-alive 4s

frontend fleet
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /v1/health
{servers}
"""


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class HAProxy:
    def __init__(self, root: Path, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    def start(cls, backends: Sequence[int]) -> HAProxy | None:
        binary = shutil.which("haproxy") or (
            "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
        )
        if binary is None:
            return None
        root = Path(tempfile.mkdtemp(prefix="fleetcore-haproxy-"))
        port = free_port()
        servers = "\n".join(
            f"    server r{i} 127.0.0.1:{p} check inter 500ms fall 1 rise 2"
            for i, p in enumerate(backends)
        )
        config = root / "haproxy.cfg"
        # Each proxied connection holds two sockets; stay inside the file limit.
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        maxconn = max(1000, (min(hard, 1 << 20) - 100) // 2)
        config.write_text(CONFIG.format(port=port, servers=servers, maxconn=maxconn))
        subprocess.run([binary, "-c", "-q", "-f", str(config)], check=True)
        log = (root / "haproxy.log").open("wb")
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdout=log,
            stderr=log,
            preexec_fn=_raise_fd_limit,  # noqa: PLW1509 - only raises a limit before exec
        )
        if not wait_for_port(port, 10):
            proc.kill()
            raise RuntimeError(f"haproxy did not start; see {root / 'haproxy.log'}")
        lb = cls(root, port, proc)
        lb.wait_ready(2 * len(backends))
        return lb

    def wait_ready(self, answers: int, timeout: float = 15.0) -> None:
        """Until ``answers`` health requests in a row went through (every
        replica checked up, with round robin)."""
        deadline = time.monotonic() + timeout
        ok = 0
        while ok < answers:
            if time.monotonic() > deadline:
                raise RuntimeError("haproxy sees no healthy replica")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/health", timeout=5) as response:  # noqa: S310
                    ok = ok + 1 if response.status == 200 else 0
            except OSError:
                ok = 0
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)
