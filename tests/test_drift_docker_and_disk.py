"""Drift on a real Docker Engine, and a real full disk (a small tmpfs)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fleetcore.testing.docker import remove_project
from fleetcore.testing.gitrepo import FleetRepo, script_role
from fleetcore.testing.services import free_port, missing

# Unique per test process: concurrent runs on one engine must not share a project.
ROLE = f"cam{os.getpid()}"
PROJECT = f"fleetcore-{ROLE}"


def compose_role(image: str, port: int) -> dict[str, str]:
    return {
        f"roles/{ROLE}/docker-compose.yml": f"""\
services:
  stream:
    image: {image}
    network_mode: host
    command: ["httpd", "-f", "-p", "127.0.0.1:{port}", "-h", "/www"]
  helper:
    image: {image}
    network_mode: host
    command: ["sleep", "3600"]
""",
        f"roles/{ROLE}/role.toml": '[health]\nsettle = "1s"\n[health.containers]\nobserve = "0s"\n',
    }


def container(service: str) -> str:
    return subprocess.run(
        [
            "docker",
            "ps",
            "-aq",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def docker(*args: str) -> str:
    """Run the docker CLI; a failure names the command and what the engine said."""
    out = subprocess.run(["docker", *args], capture_output=True, text=True)
    assert out.returncode == 0, (
        f"docker {' '.join(args)}: exit {out.returncode}: {out.stderr.strip()}"
    )
    return out.stdout


def running(service: str) -> bool:
    ident = container(service)
    if not ident:
        return False
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", ident],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip() == "true"


@pytest.fixture
def cam(device, fleet_repo: FleetRepo, docker_engine: str, compose_version: str):
    """A device running a compose role, on Compose v1 and on v2."""
    remove_project(PROJECT)
    fleet_repo.commit(compose_role(docker_engine, free_port()), "v1")
    dev = device(role=ROLE)
    assert dev.agent().once().outcome == "updated"
    yield dev
    remove_project(PROJECT)


def test_containers_stopped_or_removed_by_hand_come_back(cam) -> None:
    subprocess.run(
        ["docker", "stop", "-t", "1", container("stream")], check=True, capture_output=True
    )
    subprocess.run(["docker", "rm", "-f", container("helper")], check=True, capture_output=True)
    result = cam.agent().check(deep=False, fix=True)
    found = {(f.subject, f.code) for f in result.findings}
    assert found == {
        ("service stream", "container-exited"),
        ("service helper", "container-missing"),
    }
    assert [(f.fix, f.held) for f in result.fixes] == [("compose-up", True)]
    assert running("stream") and running("helper")


def test_an_extra_container_of_the_project_is_found(cam, docker_engine: str) -> None:
    intruder = f"{PROJECT}-intruder"
    # Not left by an earlier run (older engines exit 1 when there is none).
    subprocess.run(["docker", "rm", "-f", intruder], capture_output=True, check=False)
    docker(
        "run",
        "-d",
        "--network",
        "host",
        "--name",
        intruder,
        "--label",
        f"com.docker.compose.project={PROJECT}",
        "--label",
        "com.docker.compose.service=intruder",
        "--label",
        "com.docker.compose.oneoff=False",
        docker_engine,
        "sleep",
        "3600",
    )
    result = cam.agent().check(deep=False, fix=True)
    assert [(f.subject, f.code) for f in result.findings] == [
        ("service intruder", "container-extra")
    ]
    assert result.verdict == "fixed"  # compose up --remove-orphans removed it
    assert not container("intruder")


@pytest.fixture
def small_disk(tmp_path: Path):
    if os.geteuid() != 0:
        missing("root, to mount a small tmpfs")
    mount = tmp_path / "small"
    mount.mkdir()
    out = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        missing(f"a tmpfs mount: {out.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_cleanup_and_an_update_that_cannot_fit(device, fleet_repo, small_disk):
    v1 = fleet_repo.commit(
        {
            **script_role("v1"),
            "roles/web/role.toml": '[health]\nsettle = "0s"\n[drift.disk]\nmin_free = "3M"\n',
        },
        "v1",
    )
    dev = device(state_dir=str(small_disk / "state"))
    assert dev.agent().once().commit == v1
    # An old release left behind fills the disk.
    old = small_disk / "state" / "releases" / "web-000000000000"
    old.mkdir()
    (old / "big.bin").write_bytes(os.urandom(6 * 1024**2))
    result = dev.agent().check(deep=False, fix=True)
    assert [f.code for f in result.findings] == ["disk-low"]
    assert [(f.fix, f.held) for f in result.fixes] == [("free-disk", True)]
    assert not old.exists()
    # A release larger than the disk: skipped, with a clear alert.
    fleet_repo.commit({"roles/web/big.bin": os.urandom(10 * 1024**2)}, "v2 is too big")
    result = dev.agent().once()
    assert result.outcome == "failed" and "disk full" in result.message
    state = small_disk / "state"
    last = [json.loads(x) for x in (state / "history.jsonl").read_text().splitlines()][-1]
    assert (last["result"], last["event"]) == ("skipped", "update")
    assert "disk full" in last["reason"]
    assert dev.running() == f"v1 {v1}"
    assert not any((state / "staging").glob("*"))


def test_a_container_changed_by_hand_is_found_by_the_deep_check(cam, docker_engine) -> None:
    # Someone replaces the helper with a container of their own making, under
    # the same compose labels (those Compose itself sets included): running,
    # but not what the compose file says.
    original = container("helper")
    labels = json.loads(
        subprocess.run(
            ["docker", "inspect", "-f", "{{json .Config.Labels}}", original],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    labels["com.docker.compose.config-hash"] = "0000handmade"
    subprocess.run(["docker", "rm", "-f", original], check=True, capture_output=True)
    label_args = [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--network",
            "host",
            "--name",
            f"{PROJECT}-rogue",
            *label_args,
            docker_engine,
            "sleep",
            "7200",
        ],
        check=True,
        capture_output=True,
    )
    light = cam.agent().check(deep=False, fix=False)
    assert light.verdict == "clean"  # it runs, so a light glance sees nothing
    deep = cam.agent().check(deep=True, fix=True)
    assert [(f.subject, f.code) for f in deep.findings] == [("service helper", "container-config")]
    assert deep.verdict == "fixed"
    assert (
        f"{PROJECT}-rogue"
        not in subprocess.run(
            ["docker", "ps", "-a", "--format", "{{.Names}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
