"""A lean HTTP/1.1 load generator: keep-alive connections on one asyncio loop.

It runs in its own process (see ``load`` in server.py) and does as little as
a client can per request (bytes prepared up front, one read for the head,
one for the body), so that on a small machine the server, not the load
generator, takes the CPU. Closed loop: each connection sends its next
request when the previous answer has arrived.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

Request = tuple[bytes, int]
"""The bytes to send and the status code expected back."""


def request_bytes(
    method: str, path: str, token: str, body: Any = None, headers: dict[str, str] | None = None
) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Authorization: Bearer {token}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


async def _connection(
    port: int, requests: list[Request], first: int, step: int, deadline: float, out: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = first
    try:
        while time.perf_counter() < deadline:
            data, expected = requests[n % len(requests)]
            n += step
            start = time.perf_counter()
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            marker = head.lower().find(b"content-length:")
            if marker >= 0:
                length = int(head[marker + 15 : head.index(b"\r\n", marker)])
            if length:
                await reader.readexactly(length)
            if status != expected:
                raise RuntimeError(f"HTTP {status}, expected {expected}: {head[:200]!r}")
            out.append(time.perf_counter() - start)
    finally:
        writer.close()


async def _run(port: int, requests: list[Request], seconds: float, connections: int) -> list[float]:
    out: list[float] = []
    deadline = time.perf_counter() + seconds
    await asyncio.gather(
        *(_connection(port, requests, i, connections, deadline, out) for i in range(connections))
    )
    return out


def run(args: tuple[int, list[Request], float, int]) -> list[float]:
    """Entry point in the load process: the latency of every request answered."""
    port, requests, seconds, connections = args
    return asyncio.run(_run(port, requests, seconds, connections))
