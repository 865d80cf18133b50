"""Deciding what happens when a real service a test needs is missing."""

from __future__ import annotations

import os
import socket


def services_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("FLEETCORE_REQUIRE_SERVICES"))


def missing(what: str) -> None:
    """Fail (in CI) or skip (elsewhere) because ``what`` is not available."""
    import pytest

    if services_required():
        pytest.fail(f"required service is missing: {what}", pytrace=False)
    pytest.skip(f"not available here: {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False
