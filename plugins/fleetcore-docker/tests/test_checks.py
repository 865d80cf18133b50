"""The compose-config and containers checks against the real Docker Engine."""

from __future__ import annotations

import subprocess
import time

import pytest

from fleetcore.config.units import Duration
from fleetcore.errors import FleetcoreError
from fleetcore.testing.docker import remove_project
from fleetcore.testing.services import free_port
from fleetcore_docker.activator import ComposeActivator
from fleetcore_docker.checks import compose_config, containers
from fleetcore_docker.observe import project_containers
from fleetcore_docker.options import ComposeConfigOptions, ComposeOptions, ContainersOptions

# Every test runs on Compose v1 and on v2 (`docker compose`).
pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("compose_version")]

FAST = ComposeOptions(timeout=Duration(60), stop_timeout=Duration(1))


def test_compose_config_passes_a_valid_file_and_flags_an_invalid_one(
    docker_engine, make_release, helpers
):
    good = make_release(
        "good",
        {
            "web": helpers.service(
                docker_engine, ["sleep", "600"], environment={"TOKEN": "${API_TOKEN:?is not set}"}
            ),
        },
    )
    options = ComposeConfigOptions()
    # The variable comes from the release's environment, as when it runs.
    (missing_var,) = compose_config(helpers.check_ctx("validate", good, options))
    assert missing_var.code == "compose-config-invalid"
    assert "API_TOKEN" in missing_var.message
    assert "is not set" in missing_var.message
    env = {**helpers.fleetcore_env(good), "API_TOKEN": "x"}
    assert list(compose_config(helpers.check_ctx("validate", good, options, env=env))) == []

    bad = make_release("bad", {"web": {"image": docker_engine, "bogus_key": 1}})
    (finding,) = compose_config(helpers.check_ctx("validate", bad, options, env=env))
    assert finding.subject == "docker-compose.yml"
    assert finding.code == "compose-config-invalid"
    # Compose's own words, which differ by version (v1: "Unsupported config
    # option for services.web: 'bogus_key'"; v2: "services.web additional
    # properties 'bogus_key' not allowed"), name the service and the key.
    assert "services.web" in finding.message and "'bogus_key'" in finding.message


def test_containers_names_each_broken_service(docker_engine, project, make_release, helpers):
    port = free_port()
    release = make_release(
        "v1",
        {
            "web": helpers.httpd(
                docker_engine, port, "ok", healthcheck=helpers.wget_healthcheck(port)
            ),
            "plain": helpers.service(docker_engine, ["sleep", "600"]),
            "crash": helpers.service(docker_engine, ["sh", "-c", "exit 3"]),
            "sick": helpers.service(
                docker_engine,
                ["sleep", "600"],
                healthcheck={"test": ["CMD", "false"], "interval": "200ms", "retries": 1},
            ),
            "loop": helpers.service(
                docker_engine, ["sh", "-c", "sleep 0.2; exit 1"], restart="always"
            ),
            "slow": helpers.service(
                docker_engine,
                ["sleep", "600"],
                healthcheck={"test": ["CMD", "true"], "interval": "1m"},
            ),
            "gone": helpers.service(docker_engine, ["sleep", "600"]),
        },
    )
    ComposeActivator(FAST).start(helpers.activation_ctx(release, project))
    (gone,) = project_containers(project)["gone"]
    subprocess.run(["docker", "rm", "-f", gone.id], check=True, capture_output=True)

    options = ContainersOptions(health_timeout=Duration(1.5), observe=Duration(1))
    started = time.monotonic()
    findings = list(containers(helpers.check_ctx("health", release, options, project=project)))
    took = time.monotonic() - started
    by_service = {f.subject.removeprefix("service "): f for f in findings}
    assert sorted(by_service) == ["crash", "gone", "loop", "sick", "slow"], findings

    crash = by_service["crash"]
    assert (crash.code, crash.expected, crash.found) == (
        "container-exited",
        "running",
        "exited (code 3)",
    )
    sick = by_service["sick"]
    assert (sick.code, sick.expected, sick.found) == ("container-unhealthy", "healthy", "unhealthy")
    gone_f = by_service["gone"]
    assert (gone_f.code, gone_f.expected, gone_f.found) == (
        "container-missing",
        "running",
        "missing",
    )
    loop = by_service["loop"]
    assert loop.code == "container-restarting"
    assert loop.found.startswith("restarting"), loop
    slow = by_service["slow"]
    assert (slow.code, slow.expected, slow.found) == ("container-starting", "healthy", "starting")
    assert "after 1.5s" in slow.message
    assert str(crash).startswith("service crash: container ")
    assert str(crash).endswith("(expected running, found exited (code 3))")
    # It waited for the starting healthcheck, then watched for restarts.
    assert 2.5 <= took < 10


def test_containers_watches_for_restarts_after_a_good_first_look(
    docker_engine, project, make_release, helpers
):
    # Runs for 2s before each crash: the first look sees it running; only
    # watching it for `observe` shows that it does not stay up.
    release = make_release(
        "v1",
        {
            "loop": helpers.service(
                docker_engine, ["sh", "-c", "sleep 2; exit 1"], restart="always"
            ),
        },
    )
    ComposeActivator(FAST).start(helpers.activation_ctx(release, project))
    options = ContainersOptions(health_timeout=Duration(0), observe=Duration(3))
    (finding,) = containers(helpers.check_ctx("health", release, options, project=project))
    assert finding.subject == "service loop"
    assert finding.code == "container-restarting"
    assert finding.found.startswith("restarting")
    # Without the watch, the same container passes: the watch is what caught it.
    remove_project(project)
    ComposeActivator(FAST).start(helpers.activation_ctx(release, project))
    no_watch = ContainersOptions(health_timeout=Duration(0), observe=Duration(0))
    assert list(containers(helpers.check_ctx("health", release, no_watch, project=project))) == []


def test_containers_reports_an_unreachable_engine(
    docker_engine, project, make_release, helpers, monkeypatch
):
    release = make_release("v1", {"web": helpers.service(docker_engine, ["sleep", "600"])})
    monkeypatch.setenv("DOCKER_HOST", f"unix://{release}/no-engine.sock")
    with pytest.raises(FleetcoreError, match="cannot reach the Docker Engine"):
        project_containers(project)
    options = ContainersOptions(health_timeout=Duration(0), observe=Duration(0))
    (finding,) = containers(helpers.check_ctx("health", release, options, project=project))
    assert finding.code == "docker-unreachable"
    assert finding.subject == f"project {project}"
