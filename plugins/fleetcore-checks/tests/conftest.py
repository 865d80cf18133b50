from __future__ import annotations

import logging
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleetcore.activate.interface import ActivationContext
from fleetcore.plugin.types import CheckContext, CheckKind, DeviceInfo

DEVICE = DeviceInfo(device_id="pi-kitchen-07", role="web", segment="early")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fleetcore_env(release_dir: Path) -> dict[str, str]:
    return {
        "FLEETCORE_RELEASE_DIR": str(release_dir),
        "FLEETCORE_COMMIT": COMMIT,
        "FLEETCORE_ROLE": DEVICE.role,
        "FLEETCORE_DEVICE_ID": DEVICE.device_id,
    }


@pytest.fixture
def release_dir(tmp_path: Path) -> Path:
    path = tmp_path / "releases" / COMMIT[:12]
    path.mkdir(parents=True)
    return path


@pytest.fixture
def write_script(release_dir: Path) -> Callable[..., Path]:
    """Write a shell script into the release folder, executable by default."""

    def write(name: str, body: str, *, executable: bool = True) -> Path:
        path = release_dir / name
        path.write_text("#!/bin/sh\n" + body)
        if executable:
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return path

    return write


@pytest.fixture
def check_ctx(release_dir: Path) -> Callable[..., CheckContext]:
    def make(kind: CheckKind, options: Any, **changes: Any) -> CheckContext:
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

    return make


@pytest.fixture
def activation_ctx(release_dir: Path) -> Callable[..., ActivationContext]:
    def make(**changes: Any) -> ActivationContext:
        values: dict[str, Any] = {
            "device": DEVICE,
            "release_dir": release_dir,
            "commit": COMMIT,
            "env": fleetcore_env(release_dir),
            "project": "fleetcore-web",
        }
        values.update(changes)
        return ActivationContext(**values)

    return make
