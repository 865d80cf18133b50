"""What the Docker Engine says about a compose project's containers.

Compose (v1 and v2 alike) labels every container it creates with
``com.docker.compose.project`` and ``com.docker.compose.service``; this module
finds containers by those labels with the Docker SDK and says, per service,
whether they are as a healthy release needs them: running, healthy when they
have a healthcheck, not restarting.

It is shared by the ``containers`` health check and meant for drift checks::

    from fleetcore_docker.observe import project_containers, verdict

    for service, containers in project_containers("fleetcore-web", ["web", "db"]).items():
        v = verdict(containers)
        if v.status == "failed":
            print(service, v.code, v.found)   # db container-exited exited (code 1)

The Docker SDK is imported inside the functions: roles without compose, and
agents that only load this plugin, do not pay for importing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from attrs import frozen

from fleetcore.errors import FleetcoreError
from fleetcore_docker.compose import compose_project

if TYPE_CHECKING:
    import docker

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"


@frozen(kw_only=True)
class ContainerState:
    """One container of a compose service, as the engine reports it."""

    service: str
    name: str
    id: str
    status: str
    """The engine's state: ``created``, ``running``, ``restarting``, ``paused``,
    ``removing``, ``exited`` or ``dead``."""
    health: str | None
    """``starting``, ``healthy`` or ``unhealthy``; None without a healthcheck."""
    exit_code: int
    restart_count: int
    """How often the engine restarted it (restart policy) since it was created."""
    config_hash: str | None = None
    """Compose's hash of the service's configuration, to compare with a release."""

    @property
    def state(self) -> str:
        """A short description: ``running``, ``healthy``, ``unhealthy``,
        ``starting``, ``exited (code 1)``, ``restarting``..."""
        if self.status == "running":
            return self.health or "running"
        if self.status in ("exited", "dead"):
            return f"{self.status} (code {self.exit_code})"
        return self.status

    @property
    def expected(self) -> str:
        """What this container should be: ``healthy`` with a healthcheck, else ``running``."""
        return "running" if self.health is None else "healthy"

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> ContainerState:
        """From the engine's ``docker inspect`` document of a container."""
        labels = attrs["Config"].get("Labels") or {}
        state = attrs["State"]
        health = (state.get("Health") or {}).get("Status")
        return cls(
            service=labels.get(SERVICE_LABEL, ""),
            name=attrs["Name"].lstrip("/"),
            id=attrs["Id"][:12],
            status=state["Status"],
            health=None if health in (None, "", "none") else health,
            exit_code=int(state.get("ExitCode") or 0),
            restart_count=int(attrs.get("RestartCount") or 0),
            config_hash=labels.get(CONFIG_HASH_LABEL),
        )


@frozen(kw_only=True)
class Verdict:
    """How a service's containers measure up. ``status`` is ``ok``,
    ``pending`` (a healthcheck is still starting) or ``failed``; ``code`` is the
    finding code a drift fix can claim, ``found`` what was seen instead of
    ``expected``."""

    status: Literal["ok", "pending", "failed"]
    expected: str = "running"
    found: str = "running"
    code: str = ""
    message: str = ""


def verdict(containers: Iterable[ContainerState]) -> Verdict:
    """Judge the containers of one service; the worst container decides."""
    containers = list(containers)
    if not containers:
        return Verdict(
            status="failed",
            found="missing",
            code="container-missing",
            message="no container for this service",
        )
    pending = None
    for c in containers:
        if c.status == "running" and c.health in (None, "healthy"):
            continue
        if c.status == "running" and c.health == "starting":
            pending = pending or Verdict(
                status="pending",
                expected=c.expected,
                found="starting",
                code="container-starting",
                message=f"container {c.name} is still starting",
            )
            continue
        if c.status == "running":
            code, message = "container-unhealthy", f"container {c.name} is unhealthy"
        elif c.status == "restarting":
            code, message = "container-restarting", f"container {c.name} keeps restarting"
        elif c.status in ("exited", "dead"):
            code, message = "container-exited", f"container {c.name} is not running"
        else:
            code, message = "container-not-running", f"container {c.name} is not running"
        return Verdict(
            status="failed", expected=c.expected, found=c.state, code=code, message=message
        )
    return pending or Verdict(status="ok", expected=containers[0].expected)


def docker_client() -> docker.DockerClient:
    """A Docker SDK client for the engine of ``DOCKER_HOST`` (default: the local socket)."""
    import docker

    try:
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise FleetcoreError(f"cannot reach the Docker Engine: {exc}") from None


def project_containers(
    project: str,
    services: Iterable[str] | None = None,
    *,
    client: docker.DockerClient | None = None,
) -> dict[str, tuple[ContainerState, ...]]:
    """The containers of a compose project, by service.

    ``project`` is the compose project name (``ctx.project``); ``services``,
    when given, are the services expected, each present in the result (with no
    containers when it has none). One-off containers (``compose run``) are left
    out. Raises :class:`FleetcoreError` when the engine cannot be reached.
    """
    import docker

    result: dict[str, list[ContainerState]] = {name: [] for name in services or ()}
    own = client is None
    client = client or docker_client()
    try:
        found = client.containers.list(
            all=True,
            filters={"label": f"{PROJECT_LABEL}={compose_project(project)}"},
            ignore_removed=True,  # removed between listing and inspecting
        )
    except (docker.errors.DockerException, OSError) as exc:  # requests' errors are OSErrors
        raise FleetcoreError(f"cannot list containers of {project}: {exc}") from None
    finally:
        if own:
            client.close()
    numbered = []
    for container in found:
        labels = container.attrs["Config"].get("Labels") or {}
        if labels.get(ONEOFF_LABEL) == "True":
            continue
        numbered.append(
            (int(labels.get(NUMBER_LABEL) or 0), ContainerState.from_attrs(container.attrs))
        )
    for _number, state in sorted(numbered, key=lambda item: (item[1].service, item[0])):
        if services is None or state.service in result:
            result.setdefault(state.service, []).append(state)
    return {name: tuple(states) for name, states in result.items()}
