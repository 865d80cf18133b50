"""Rollback protection in git-only mode, on real git: a branch that goes
back (or is rewritten) is refused unless an operator's pin, lock or stable
commit says so."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fleetcore.testing.gitrepo import FleetRepo, script_role


def _history(dev: Any) -> list[dict[str, Any]]:
    lines = (dev.state / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("url", ["path", "file"])
def test_a_branch_reset_to_an_older_commit_is_refused(
    device: Any, fleet_repo: FleetRepo, url: str
) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    for n in range(3):  # history deeper than the fetcher's shallow cache
        fleet_repo.commit({f"notes/{n}.txt": "x"}, f"note {n}")
    v2 = fleet_repo.commit(script_role("v2"), "v2")
    repo = f"file://{fleet_repo.path}" if url == "file" else str(fleet_repo.path)
    dev = device(repo=repo)
    assert dev.agent().once().commit == v2

    # Someone who can push resets main to the old, vulnerable release.
    fleet_repo.git("reset", "-q", "--hard", v1)
    agent = dev.agent()
    result = agent.once()
    assert result.outcome == "failed" and result.commit == v2
    assert result.message.startswith(f"rollback refused: {v1} is an ancestor of {v2}")
    assert dev.running() == f"v2 {v2}"
    [refused] = [h for h in _history(dev) if h["to_commit"] == v1]
    assert refused["result"] == "failed" and "rollback refused" in refused["reason"]
    # Refused again on the next cycle, recorded once.
    assert agent.once().outcome == "failed"
    assert len([h for h in _history(dev) if h["to_commit"] == v1]) == 1
    assert dev.running() == f"v2 {v2}"


def test_a_rewritten_history_is_refused_and_a_pin_may_go_back(
    device: Any, fleet_repo: FleetRepo
) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    v2 = fleet_repo.commit(script_role("v2"), "v2")
    dev = device()
    assert dev.agent().once().commit == v2

    # A history with nothing in common, force-pushed over main.
    fleet_repo.git("checkout", "-q", "--orphan", "evil")
    evil = fleet_repo.commit(script_role("evil"), "evil")
    fleet_repo.git("branch", "-f", "main", evil)
    fleet_repo.git("checkout", "-q", "main")
    result = dev.agent().once()
    assert result.outcome == "failed"
    assert f"{evil} is unrelated to {v2}" in result.message
    assert dev.running() == f"v2 {v2}"

    # The operator's way back: a pin (in fleet.toml) to v1, on the real history.
    fleet_repo.git("reset", "-q", "--hard", v2)
    fleet_repo.commit(
        {"fleet.toml": f'[forced_version]\ncommit = "{v1}"\nreason = "v2 is broken"\n'}, "pin"
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", v1)
    assert dev.running() == f"v1 {v1}"


def test_a_lock_and_a_stable_commit_may_go_back(device: Any, fleet_repo: FleetRepo) -> None:
    v1 = fleet_repo.commit(script_role("v1"), "v1")
    v2 = fleet_repo.commit(script_role("v2"), "v2")
    dev = device()
    assert dev.agent().once().commit == v2
    fleet_repo.commit(
        {"devices/pi-001.toml": f'[version_lock]\ncommit = "{v1}"\nreason = "debug"\n'}, "lock"
    )
    assert dev.agent().once().commit == v1
    assert dev.running() == f"v1 {v1}"

    # The lock lifted: forward again. Then the rollout is aborted back to its
    # stable commit (no device in the 0% rollout).
    fleet_repo.commit({"devices/pi-001.toml": None}, "unlock")
    head = fleet_repo.head()
    assert dev.agent().once().commit == head
    fleet_repo.commit(
        {"fleet.toml": f'[rollout]\nstrategy = "percentage"\npercent = 0\nstable = "{v1}"\n'},
        "abort: back to v1",
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", v1)
