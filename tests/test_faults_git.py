"""Git-only mode through a broken network: a real `git daemon`, real agents,
and the fault proxy of fleetcore.testing between them."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest

from fleetcore.testing.faultproxy import Fault, FaultProxy
from fleetcore.testing.gitrepo import FleetRepo, GitDaemon, script_role

# Incompressible, so the pack git sends is big enough to be cut midway.
BIG = {"roles/web/data/blob.txt": secrets.token_hex(300_000)}


@pytest.fixture
def remote(git_daemon: GitDaemon) -> FleetRepo:
    return FleetRepo.create(git_daemon.base / f"fleet-{secrets.token_hex(4)}")


@pytest.fixture
def proxy(git_daemon: GitDaemon) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", git_daemon.port)) as p:
        yield p


def through(proxy: FaultProxy, git_daemon: GitDaemon, repo: FleetRepo) -> str:
    return git_daemon.url(repo).replace(f":{git_daemon.port}/", f":{proxy.port}/")


def test_a_fetch_cut_midway_is_retried_and_verified(device, remote, proxy, git_daemon):
    remote.commit(script_role("v1", extra=BIG), "v1")
    dev = device(repo=through(proxy, git_daemon, remote))
    # Every git pack is cut after 100 kB this cycle: the update does not happen.
    proxy.fault = Fault.cut(after=100_000)
    result = dev.agent().once()
    assert result.outcome == "unreachable", result
    assert dev.running() is None
    proxy.fault = Fault.none()
    result = dev.agent().once()
    assert result.outcome == "updated", result  # verified against git's tree
    assert dev.running().startswith("v1")


@pytest.mark.parametrize(
    "fault",
    [Fault.blackhole(), Fault.slow(1.0), Fault.reset(), Fault.garbage(4096)],
    ids=["blackhole", "slow-loris", "reset", "garbage"],
)
def test_a_broken_git_host_costs_a_cycle_no_more(device, remote, proxy, git_daemon, fault):
    remote.commit(script_role("v1"), "v1")
    dev = device(repo=through(proxy, git_daemon, remote), source_extra='timeout = "3s"')
    assert dev.agent().once().outcome == "updated"
    remote.commit(script_role("v2"), "v2")
    proxy.fault = fault
    started = time.monotonic()
    result = dev.agent().once()
    assert result.outcome == "unreachable", result
    # Bounded by the git timeout (3 s) and the retries: generous for a loaded machine.
    assert time.monotonic() - started < 60
    assert dev.running().startswith("v1")  # the running release is untouched
    proxy.fault = Fault.none()
    assert dev.agent().once().outcome == "updated"
    assert dev.running().startswith("v2")
