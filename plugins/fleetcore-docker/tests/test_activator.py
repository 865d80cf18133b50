"""The compose activator against the real Docker Engine and Compose."""

from __future__ import annotations

import subprocess

import pytest

from fleetcore.config.units import Duration
from fleetcore.errors import FleetcoreError
from fleetcore.testing.services import free_port
from fleetcore_docker.activator import ComposeActivator
from fleetcore_docker.checks import containers
from fleetcore_docker.observe import project_containers
from fleetcore_docker.options import ComposeOptions, ContainersOptions

# Every test runs on Compose v1 and on v2 (`docker compose`).
pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("compose_version")]

FAST = ComposeOptions(timeout=Duration(60), stop_timeout=Duration(1))


def test_start_update_rollback_stop(docker_engine, project, make_release, helpers):
    port = free_port()
    # Release 1 shows a value of the agent's env file and one of ctx.env:
    # compose must see both.
    v1 = make_release(
        "v1",
        {
            "web": helpers.httpd(
                docker_engine,
                port,
                "v1-${GREETING}-${FLEETCORE_COMMIT}",
                healthcheck=helpers.wget_healthcheck(port),
            ),
        },
        files={".fleetcore.env": "GREETING=hello-from-env-file\n"},
    )
    v2 = make_release(
        "v2",
        {
            "web": helpers.httpd(docker_engine, port, "v2"),
            "worker": helpers.service(docker_engine, ["sleep", "600"]),
        },
    )
    activator = ComposeActivator(FAST)
    ctx1 = helpers.activation_ctx(v1, project)

    activator.start(ctx1)
    assert helpers.http_get(port) == f"v1-hello-from-env-file-{helpers.COMMIT}"
    first = project_containers(project)
    assert list(first) == ["web"]
    (web,) = first["web"]
    assert web.status == "running"
    assert web.name.startswith(project)
    findings = list(
        containers(
            helpers.check_ctx(
                "health",
                v1,
                ContainersOptions(health_timeout=Duration(15), observe=Duration(0.5)),
                project=project,
            )
        )
    )
    assert findings == []
    # Starting again (the agent retrying, or an interrupted start) changes nothing.
    activator.start(ctx1)
    assert project_containers(project)["web"][0].id == web.id

    # Update: same project, new compose file: web is replaced, worker added.
    activator.start(helpers.activation_ctx(v2, project))
    assert helpers.http_get(port) == "v2"
    second = project_containers(project)
    assert sorted(second) == ["web", "worker"]
    assert second["web"][0].id != web.id
    assert second["worker"][0].status == "running"

    # Rollback: the old compose file brings v1 back and removes the orphan.
    activator.start(ctx1)
    assert helpers.http_get(port).startswith("v1-hello-from-env-file-")
    third = project_containers(project)
    assert list(third) == ["web"]
    assert third["web"][0].id not in (web.id, second["web"][0].id)

    activator.stop(ctx1)
    assert project_containers(project) == {}
    assert project_containers(project, ["web"]) == {"web": ()}


def test_start_failure_reports_compose_output_without_secrets(
    docker_engine, project, make_release, helpers
):
    # Docker repeats an invalid container name in its error: here it holds a secret.
    release = make_release(
        "bad",
        {
            "web": helpers.service(docker_engine, ["true"], container_name="${API_TOKEN}"),
        },
    )
    ctx = helpers.activation_ctx(
        release, project, env={**helpers.fleetcore_env(release), "API_TOKEN": "s3cret value!"}
    )
    with pytest.raises(FleetcoreError) as err:
        ComposeActivator(FAST).start(ctx)
    message = str(err.value)
    assert f"up` of project {project} failed (exit code 1)" in message
    assert "Invalid container name (***)" in message
    assert "s3cret" not in message


def test_start_refuses_an_invalid_compose_file_with_its_message(
    docker_engine, project, make_release, helpers
):
    release = make_release("invalid", {"web": {"image": docker_engine, "bogus_key": 1}})
    with pytest.raises(FleetcoreError, match="bogus_key"):
        ComposeActivator(FAST).start(helpers.activation_ctx(release, project))


def test_stop_removes_running_and_stopped_containers(docker_engine, project, make_release, helpers):
    release = make_release(
        "v1",
        {
            "a": helpers.service(docker_engine, ["sleep", "600"]),
            "b": helpers.service(docker_engine, ["sleep", "600"]),
        },
    )
    ctx = helpers.activation_ctx(release, project)
    activator = ComposeActivator(FAST)
    activator.start(ctx)
    assert sorted(project_containers(project)) == ["a", "b"]
    subprocess.run(
        ["docker", "stop", "-t", "0", project_containers(project)["a"][0].id],
        check=True,
        capture_output=True,
    )
    activator.stop(ctx)
    assert project_containers(project) == {}


def test_pull_failure_is_not_fatal(docker_engine, project, make_release, helpers, caplog):
    # No registry is reachable: the local image is used, as on an offline device.
    release = make_release("v1", {"web": helpers.service(docker_engine, ["sleep", "600"])})
    ComposeActivator(
        ComposeOptions(pull=True, timeout=Duration(60), stop_timeout=Duration(1))
    ).start(helpers.activation_ctx(release, project))
    assert project_containers(project)["web"][0].status == "running"
    assert "pull` of project" in caplog.text
    assert "failed, going on" in caplog.text
