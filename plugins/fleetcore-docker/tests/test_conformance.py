"""The compose activator, checks and drift fix against fleetcore's
conformance kits, on the real Docker Engine."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetcore.activate.interface import ActivationContext
from fleetcore.plugin.types import Activator, Check, CheckContext, DriftFix
from fleetcore.testing.conformance import check_context
from fleetcore.testing.conformance.activator import ActivatorKit, activation_context
from fleetcore.testing.conformance.checks import CheckKit
from fleetcore.testing.conformance.drift import DriftFixKit, Repair
from fleetcore.testing.docker import remove_project
from fleetcore_docker import plugin
from fleetcore_docker.activator import ComposeActivator
from fleetcore_docker.options import ComposeOptions

pytestmark = pytest.mark.docker

LABEL = "fleetcore.kit.marker"
FAST = {"timeout": "60s", "stop_timeout": "0s"}


def compose_release(folder: Path, image: str, marker: str, **extra: Any) -> Path:
    """A release of one service that sleeps, labelled with ``marker``."""
    folder.mkdir(parents=True, exist_ok=True)
    service = {
        "image": image,
        "network_mode": "host",
        "stop_signal": "KILL",
        "command": ["sleep", "600"],
        "labels": {LABEL: marker},
        **extra,
    }
    (folder / "docker-compose.yml").write_text(json.dumps({"services": {"app": service}}))
    return folder


def docker_ps(project: str, *args: str) -> list[str]:
    """``docker ps`` of the project's containers."""
    own = f"label=com.docker.compose.project={project}"
    return subprocess.run(
        ["docker", "ps", "--filter", own, *args], capture_output=True, text=True, check=True
    ).stdout.split()


def running_markers(project: str) -> str | None:
    labels = f'{{{{.Label "{LABEL}"}}}}'
    found = docker_ps(project, "--filter", "status=running", "--format", labels)
    return ",".join(sorted(set(found))) or None


@pytest.fixture
def started(
    docker_engine: str, project: str, tmp_path: Path
) -> Iterator[tuple[Path, ActivationContext]]:
    """A release running under this test's project."""
    release = compose_release(tmp_path / "running", docker_engine, "running")
    ctx = activation_context(release, project)
    ComposeActivator(ComposeOptions()).start(ctx)
    yield release, ctx


@pytest.fixture(scope="module")
def running_release(
    docker_engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, ActivationContext]]:
    """A release running for the module, for checks that only look at it."""
    project = f"fctest-kit-{uuid.uuid4().hex[:10]}"
    release = compose_release(tmp_path_factory.mktemp("kit") / "running", docker_engine, "up")
    ctx = activation_context(release, project)
    ComposeActivator(ComposeOptions()).start(ctx)
    yield release, ctx
    remove_project(project)


def records(hook: Callable[[], Any], name: str) -> Any:
    return next(r for r in hook() if r.name == name)


class TestComposeActivator(ActivatorKit):
    @pytest.fixture
    def record(self) -> Activator:
        return records(plugin.fleetcore_register_activators, "compose")

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        return FAST

    @pytest.fixture
    def kit_project(self, project: str) -> str:
        return project

    @pytest.fixture
    def make_release(self, docker_engine: str, tmp_path: Path) -> Callable[[str], Path]:
        return lambda marker: compose_release(tmp_path / "kit" / marker, docker_engine, marker)

    @pytest.fixture
    def make_broken_release(self, docker_engine: str, tmp_path: Path) -> Callable[[str], Path]:
        """A compose file Compose refuses."""
        return lambda marker: compose_release(
            tmp_path / "broken" / marker, docker_engine, marker, bogus_key=1
        )

    @pytest.fixture
    def running(self) -> Callable[[ActivationContext], str | None]:
        return lambda ctx: running_markers(ctx.project)


class TestComposeConfig(CheckKit):
    kind = "validate"

    @pytest.fixture
    def record(self) -> Check:
        return records(plugin.fleetcore_register_validate_checks, "compose-config")

    @pytest.fixture
    def passing(self, record: Check, docker_engine: str, kit_release: Path) -> CheckContext:
        compose_release(kit_release, docker_engine, "valid")
        return check_context("validate", kit_release, record=record)

    @pytest.fixture
    def failing(self, record: Check, docker_engine: str, tmp_path: Path) -> CheckContext:
        release = compose_release(tmp_path / "bad", docker_engine, "bad", bogus_key=1)
        return check_context("validate", release, record=record)

    @pytest.fixture
    def not_applicable(self, record: Check, tmp_path: Path) -> CheckContext:
        (tmp_path / "empty").mkdir()
        return check_context("validate", tmp_path / "empty", record=record)


class ContainersCheck(CheckKit):
    """Passing: the release runs under the project; failing: it was never started."""

    options_table: Mapping[str, Any] = {}

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        return self.options_table

    @pytest.fixture
    def passing(
        self,
        record: Check,
        running_release: tuple[Path, ActivationContext],
        options: Mapping[str, Any],
    ) -> CheckContext:
        release, ctx = running_release
        return check_context(
            self.kind, release, record=record, options=options, project=ctx.project
        )

    @pytest.fixture
    def failing(
        self, record: Check, docker_engine: str, tmp_path: Path, options: Mapping[str, Any]
    ) -> CheckContext:
        release = compose_release(tmp_path / "never-started", docker_engine, "never")
        return check_context(
            self.kind, release, record=record, options=options, project="fleetcore-kit-nothing"
        )

    @pytest.fixture
    def not_applicable(self, record: Check, tmp_path: Path) -> CheckContext:
        (tmp_path / "empty").mkdir()
        return check_context(self.kind, tmp_path / "empty", record=record)


class TestContainersHealth(ContainersCheck):
    kind = "health"
    options_table = {"observe": "0s", "health_timeout": "10s"}

    @pytest.fixture
    def record(self) -> Check:
        return records(plugin.fleetcore_register_health_checks, "containers")


class TestContainersDrift(ContainersCheck):
    kind = "drift"

    @pytest.fixture
    def record(self) -> Check:
        return records(plugin.fleetcore_register_drift_checks, "containers")


class TestComposeUp(DriftFixKit):
    """A container removed by hand; the fix starts the release again."""

    @pytest.fixture
    def record(self) -> DriftFix:
        return records(plugin.fleetcore_register_drift_fixes, "compose-up")

    @pytest.fixture
    def check(self) -> Check:
        return records(plugin.fleetcore_register_drift_checks, "containers")

    @pytest.fixture
    def drifted(self, check: Check, started: tuple[Path, ActivationContext]) -> CheckContext:
        release, ctx = started
        removed = docker_ps(ctx.project, "--all", "--quiet")
        assert removed, f"nothing of {ctx.project} to remove"
        subprocess.run(["docker", "rm", "-f", *removed], capture_output=True, check=True)

        def restart() -> str:
            ComposeActivator(ComposeOptions()).start(ctx)
            return "started again"

        return check_context(
            "drift", release, record=check, project=ctx.project, repair=Repair(restart_with=restart)
        )
