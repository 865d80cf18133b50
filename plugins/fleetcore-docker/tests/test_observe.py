"""Judging container states (no engine needed: the states are data)."""

from __future__ import annotations

from fleetcore_docker.checks import _restarts
from fleetcore_docker.observe import ContainerState, verdict


def state(status="running", health=None, exit_code=0, restarts=0, id_="c1"):
    return ContainerState(
        service="web",
        name=f"p_web_{id_}",
        id=id_,
        status=status,
        health=health,
        exit_code=exit_code,
        restart_count=restarts,
    )


INSPECT = {
    "Id": "0123456789abcdef0123",
    "Name": "/fleetcore-web_db_1",
    "RestartCount": 4,
    "Config": {
        "Labels": {"com.docker.compose.service": "db", "com.docker.compose.config-hash": "abc"}
    },
    "State": {"Status": "exited", "ExitCode": 137, "Health": {"Status": "unhealthy"}},
}


def test_from_inspect_document():
    c = ContainerState.from_attrs(INSPECT)
    assert (c.service, c.name, c.id, c.status, c.exit_code, c.restart_count, c.config_hash) == (
        "db",
        "fleetcore-web_db_1",
        "0123456789ab",
        "exited",
        137,
        4,
        "abc",
    )
    assert (c.state, c.expected) == ("exited (code 137)", "healthy")
    no_health = {**INSPECT, "State": {"Status": "running", "ExitCode": 0}}
    c = ContainerState.from_attrs(no_health)
    assert (c.health, c.state, c.expected) == (None, "running", "running")


def test_verdicts():
    assert verdict([state()]).status == "ok"
    assert verdict([state(health="healthy")]).status == "ok"
    v = verdict([state(health="starting")])
    assert (v.status, v.found, v.expected) == ("pending", "starting", "healthy")
    v = verdict([])
    assert (v.status, v.code, v.found) == ("failed", "container-missing", "missing")
    v = verdict([state("exited", exit_code=1)])
    assert (v.status, v.code, v.found) == ("failed", "container-exited", "exited (code 1)")
    v = verdict([state("restarting")])
    assert (v.code, v.found) == ("container-restarting", "restarting")
    v = verdict([state(health="unhealthy")])
    assert (v.code, v.found, v.expected) == ("container-unhealthy", "unhealthy", "healthy")
    v = verdict([state("paused")])
    assert (v.code, v.found) == ("container-not-running", "paused")
    # With several containers (scale), the worst one decides.
    v = verdict([state(id_="a"), state(health="starting", id_="b"), state("exited", id_="c")])
    assert (v.status, v.found) == ("failed", "exited (code 0)")
    assert verdict([state(id_="a"), state(health="starting", id_="b")]).status == "pending"


def test_restarts_count_only_the_same_containers():
    before = (state(restarts=2, id_="a"), state(restarts=0, id_="b"))
    assert _restarts(before, (state(restarts=2, id_="a"), state(restarts=0, id_="b"))) == 0
    assert _restarts(before, (state(restarts=5, id_="a"), state(restarts=1, id_="b"))) == 4
    # A container recreated meanwhile (new id) is not a restart.
    assert _restarts(before, (state(restarts=7, id_="z"),)) == 0
