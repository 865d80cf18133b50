"""The agent with the compose activator, on a real Docker Engine."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest

from fleetcore.testing.docker import remove_project
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.services import free_port

# Unique per test process: concurrent runs on one engine must not share a project.
ROLE = f"cam{os.getpid()}"
PROJECT = f"fleetcore-{ROLE}"


def compose_role(image: str, port: int, page: str, command: str | None = None) -> dict[str, str]:
    command = (
        command
        or f'["sh", "-c", "echo {page} > /www/index.html && '
        f'exec httpd -f -p 127.0.0.1:{port} -h /www"]'
    )
    return {
        f"roles/{ROLE}/docker-compose.yml": f"""\
services:
  stream:
    image: {image}
    network_mode: host
    command: {command}
    restart: "no"
""",
        f"roles/{ROLE}/role.toml": f"""\
[health]
settle = "1s"
attempts = 15
interval = "1s"

[health.containers]
observe = "1s"
health_timeout = "10s"

[health.http]
url = "http://127.0.0.1:{port}/"
timeout = "2s"
""",
    }


def page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as response:
        return response.read().decode().strip()


@pytest.fixture
def cam_project(compose_version: str):  # on Compose v1 and on v2
    remove_project(PROJECT)
    yield PROJECT
    remove_project(PROJECT)


def test_compose_release_updates_and_a_crashing_one_rolls_back(
    device, fleet_repo: FleetRepo, docker_engine: str, cam_project: str
) -> None:
    port = free_port()
    v1 = fleet_repo.commit(compose_role(docker_engine, port, "one"), "v1")
    dev = device(role=ROLE)
    assert dev.agent().once().outcome == "updated"
    assert page(port) == "one"

    v2 = fleet_repo.commit(compose_role(docker_engine, port, "two"), "v2")
    assert dev.agent().once().commit == v2
    assert page(port) == "two"

    fleet_repo.commit(
        compose_role(docker_engine, port, "three", command='["sh", "-c", "echo dying; exit 3"]'),
        "v3 crashes",
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("rolled_back", v2)
    assert "exited (code 3)" in result.message
    assert page(port) == "two"  # the previous release's container is back
    history = [json.loads(x) for x in (dev.state / "history.jsonl").read_text().splitlines()]
    assert [h["result"] for h in history] == ["success", "success", "rollback"]
    assert history[0]["to_commit"] == v1


def test_invalid_compose_file_is_refused_before_activation(
    device, fleet_repo: FleetRepo, docker_engine: str, cam_project: str
) -> None:
    port = free_port()
    v1 = fleet_repo.commit(compose_role(docker_engine, port, "one"), "v1")
    dev = device(role=ROLE)
    dev.agent().once()
    fleet_repo.commit(
        {f"roles/{ROLE}/docker-compose.yml": "services:\n  stream:\n    imagee: x\n"}, "typo"
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("failed", v1)
    assert "compose-config" in result.message
    assert page(port) == "one"
