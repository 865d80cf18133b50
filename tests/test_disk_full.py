"""A release bigger than the disk, on a real 8 MiB filesystem (tmpfs): the
update is given up, the running release keeps running, and the space the
attempt took is given back (the fetcher's cache included)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.testing.disks import free_bytes, small_disk
from fleetcore.testing.gitrepo import FleetRepo, script_role

MiB = 1 << 20
# Random bytes as base64: git's zlib cannot shrink it much, so the fetch is big.
HUGE = {"roles/web/data/huge.txt": base64.b64encode(os.urandom(10 * MiB))}


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_disk(tmp_path / "disk", 8 * MiB) as mounted:
        yield mounted


def test_a_git_fetch_that_fills_the_disk_gives_the_space_back(device, fleet_repo: FleetRepo, disk):
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device(state_dir=str(disk / "state"))
    assert dev.agent().once().outcome == "updated"
    before = free_bytes(disk)
    fleet_repo.commit(script_role("v2", extra=HUGE), "v2")
    result = dev.agent().once()
    assert result.outcome in ("skipped", "failed"), result
    assert "disk full" in result.message or "No space left" in result.message, result.message
    assert dev.running().startswith("v1")  # the running release is untouched
    # The space the attempt used is free again: no half-fetched objects, no staging.
    assert free_bytes(disk) >= before - 256 * 1024, (before, free_bytes(disk))
    assert not (disk / "state" / "staging").exists() or not any(
        (disk / "state" / "staging").iterdir()
    )
    # With the big file gone again the device updates as usual.
    fleet_repo.commit({"roles/web/data/huge.txt": None, **script_role("v3")}, "v3")
    assert dev.agent().once().outcome == "updated"
    assert dev.running().startswith("v3")
