"""Decrypted secrets reach real containers through the compose activator."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest

from fleetcore.testing.docker import remove_project
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.services import free_port
from fleetcore_age.testing import age_encrypt

ROLE = "agesecrets"
PROJECT = f"fleetcore-{ROLE}"
TOKEN = "compose-token-81d3e2"
DB = "password=compose-db-4c77\n"


def sha(data: str) -> str:
    return hashlib.sha256(data.encode()).hexdigest()


def compose_role(image: str, port: int, recipient: str) -> dict[str, str | bytes]:
    # The container serves digests of what it got: the env value (from the
    # decrypted .env through .fleetcore.env) and the mounted decrypted file.
    script = (
        "mkdir -p /www && "
        'printf %s \\"$$API_TOKEN\\" | sha256sum | cut -c1-64 > /www/index.html && '
        "sha256sum < /run/secrets/db.conf | cut -c1-64 >> /www/index.html && "
        f"exec httpd -f -p 127.0.0.1:{port} -h /www"
    )
    return {
        f"roles/{ROLE}/docker-compose.yml": f"""\
services:
  app:
    image: {image}
    network_mode: host
    environment:
      API_TOKEN: ${{API_TOKEN}}
    volumes:
      - ./config/db.conf:/run/secrets/db.conf:ro
    command: ["sh", "-c", "{script}"]
    restart: "no"
""",
        f"roles/{ROLE}/role.toml": f"""\
[health]
settle = "1s"
attempts = 15
interval = "1s"

[health.http]
url = "http://127.0.0.1:{port}/"
timeout = "2s"
""",
        f"roles/{ROLE}/.env.age": age_encrypt(f"API_TOKEN={TOKEN}\n".encode(), [recipient]),
        f"roles/{ROLE}/config/db.conf.age": age_encrypt(DB.encode(), [recipient]),
    }


@pytest.fixture
def project():
    remove_project(PROJECT)
    yield PROJECT
    remove_project(PROJECT)


@pytest.mark.docker
def test_containers_get_the_decrypted_env_and_files(
    device, fleet_repo: FleetRepo, docker_engine: str, project: str
) -> None:
    dev = device(role=ROLE)
    port = free_port()
    v1 = fleet_repo.commit(compose_role(docker_engine, port, dev.recipient))
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", v1), result.message
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as response:
        served = response.read().decode().split()
    assert served == [sha(TOKEN), sha(DB)]
