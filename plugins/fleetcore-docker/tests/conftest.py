from __future__ import annotations

import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetcore.activate.interface import ActivationContext
from fleetcore.plugin.types import CheckContext, CheckKind, DeviceInfo
from fleetcore.testing.docker import remove_project

DEVICE = DeviceInfo(device_id="pi-kitchen-07", role="web", segment="early")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def service(image: str, command: list[str], **extra: Any) -> dict[str, Any]:
    """A compose service on the host network (there is no bridge here) that
    stops at once (SIGKILL), so replacing and removing it takes no time."""
    return {
        "image": image,
        "network_mode": "host",
        "stop_signal": "KILL",
        "command": command,
        **extra,
    }


def httpd(image: str, port: int, text: str, **extra: Any) -> dict[str, Any]:
    """A service answering ``text`` on http://127.0.0.1:PORT/ (``$`` escaped
    as ``$$`` where the shell, not compose, is to see it)."""
    script = f"echo {text} > /www/index.html && exec httpd -f -p 127.0.0.1:{port} -h /www"
    return service(image, ["sh", "-c", script], **extra)


def wget_healthcheck(port: int, interval: str = "200ms") -> dict[str, Any]:
    return {
        "test": ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{port}/"],
        "interval": interval,
        "timeout": "1s",
        "retries": 1,
    }


def http_get(port: int, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
                return resp.read().decode().strip()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def project() -> Iterator[str]:
    """A compose project name of this test only, its containers removed afterwards."""
    name = f"fctest-{uuid.uuid4().hex[:10]}"
    yield name
    remove_project(name)


@pytest.fixture
def make_release(tmp_path: Path) -> Callable[..., Path]:
    """Write a release folder: a compose file (JSON is YAML) and other files."""

    def make(
        name: str,
        services: dict[str, Any] | str,
        *,
        filename: str = "docker-compose.yml",
        files: dict[str, str] | None = None,
    ) -> Path:
        path = tmp_path / "releases" / name
        path.mkdir(parents=True)
        text = (
            services if isinstance(services, str) else json.dumps({"services": services}, indent=2)
        )
        (path / filename).write_text(text)
        for rel, content in (files or {}).items():
            (path / rel).write_text(content)
        return path

    return make


def fleetcore_env(release_dir: Path, commit: str = COMMIT) -> dict[str, str]:
    return {
        "FLEETCORE_RELEASE_DIR": str(release_dir),
        "FLEETCORE_COMMIT": commit,
        "FLEETCORE_ROLE": DEVICE.role,
        "FLEETCORE_DEVICE_ID": DEVICE.device_id,
    }


def activation_ctx(release_dir: Path, project: str, **changes: Any) -> ActivationContext:
    values: dict[str, Any] = {
        "device": DEVICE,
        "release_dir": release_dir,
        "commit": COMMIT,
        "env": fleetcore_env(release_dir),
        "project": project,
    }
    values.update(changes)
    return ActivationContext(**values)


def check_ctx(kind: CheckKind, release_dir: Path, options: Any, **changes: Any) -> CheckContext:
    values: dict[str, Any] = {
        "kind": kind,
        "device": DEVICE,
        "release_dir": release_dir,
        "commit": COMMIT,
        "manifest": None,
        "options": options,
        "log": logging.getLogger("test"),
        "env": fleetcore_env(release_dir),
    }
    values.update(changes)
    return CheckContext(**values)


@pytest.fixture
def helpers() -> Any:
    """The helpers above, for test modules (imported by pytest, not by name)."""
    import types

    return types.SimpleNamespace(
        service=service,
        httpd=httpd,
        wget_healthcheck=wget_healthcheck,
        http_get=http_get,
        activation_ctx=activation_ctx,
        check_ctx=check_ctx,
        fleetcore_env=fleetcore_env,
        DEVICE=DEVICE,
        COMMIT=COMMIT,
    )
