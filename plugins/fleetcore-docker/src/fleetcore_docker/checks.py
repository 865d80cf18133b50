"""The checks of compose roles.

``compose-config`` (validate) asks Compose whether the release's compose file
is valid, before anything is started: ``config -q`` with the release's
environment, so a variable that does not interpolate, an unknown key or a bad
type keeps the current release running, with Compose's own message.

``containers`` (health) looks at what runs after activation: every service
of the compose file needs a container of the role's project that is running,
healthy if it has a healthcheck (containers still ``starting`` are waited for,
up to ``health_timeout``), not restarting, and whose restart count does not
grow while it is watched for ``observe``. Each problem is one finding naming
the service, what was expected and what was found::

    service db: container fleetcore-web_db_1 is not running
        (expected running, found exited (code 1))

Options, in ``role.toml``::

    [health.containers]
    health_timeout = "60s"
    observe = "2s"
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fleetcore.activate.interface import project_name
from fleetcore.errors import FleetcoreError
from fleetcore.plugin.types import CheckContext, Finding
from fleetcore_docker.basics import has_compose_file
from fleetcore_docker.options import ComposeConfigOptions, ContainersOptions

if TYPE_CHECKING:
    from fleetcore_docker.observe import ContainerState, Verdict

# Compose and the Docker SDK are imported by the checks that run: the plugin
# is loaded by every start of the agent, most of them running no compose role.

POLL = 0.25
"""Seconds between looks at containers whose healthcheck is starting."""


def applies(ctx: CheckContext) -> bool:
    """Both checks look at releases that have a compose file."""
    return has_compose_file(ctx.release_dir)


def compose_config(ctx: CheckContext) -> Iterator[Finding]:
    """The ``compose-config`` validate check."""
    from fleetcore_docker import compose as cli

    options = ctx.options or ComposeConfigOptions()
    files = cli.compose_files(ctx.release_dir)
    if not files:
        yield Finding(
            message=f"no compose file (looked for {', '.join(cli.COMPOSE_FILES)})",
            subject=str(ctx.release_dir),
            code="compose-file-missing",
        )
        return
    try:
        compose = cli.resolve(options.command)
        proc = cli.run(
            cli.command(compose, ctx.release_dir, "config", "-q"),
            cwd=ctx.release_dir,
            env=ctx.env,
            timeout=options.timeout.seconds,
            what=f"`{' '.join(compose.argv)} config`",
        )
    except FleetcoreError as exc:
        yield Finding(message=str(exc), subject=files[0].name, code="compose-unavailable")
        return
    if proc.returncode != 0:
        yield Finding(
            message=f"compose file is invalid: {cli.error_output(proc, ctx.env)}",
            subject=files[0].name,
            code="compose-config-invalid",
        )


def containers(ctx: CheckContext) -> Iterator[Finding]:
    """The ``containers`` health check."""
    from fleetcore_docker import compose as cli
    from fleetcore_docker.observe import project_containers, verdict

    options = ctx.options or ContainersOptions()
    project = ctx.project or project_name(ctx.device)
    try:
        compose = cli.resolve(options.command)
        services = cli.services(compose, ctx.release_dir, ctx.env)
    except FleetcoreError as exc:
        yield Finding(message=str(exc), subject=f"project {project}", code="compose-unavailable")
        return
    try:
        states = _wait_while_starting(project, services, options.health_timeout.seconds)
    except FleetcoreError as exc:
        yield Finding(message=str(exc), subject=f"project {project}", code="docker-unreachable")
        return
    verdicts = {service: verdict(states[service]) for service in services}
    for service, v in verdicts.items():
        if v.status != "ok":
            yield _finding(service, v, options)
    watched = [service for service, v in verdicts.items() if v.status == "ok"]
    if not watched or options.observe.seconds <= 0:
        return
    # A container in a restart loop can look fine at one glance; its restart
    # count growing over a short watch gives it away.
    time.sleep(options.observe.seconds)
    try:
        later = project_containers(project, watched)
    except FleetcoreError as exc:
        yield Finding(message=str(exc), subject=f"project {project}", code="docker-unreachable")
        return
    for service in watched:
        v = verdict(later[service])
        if v.status != "ok":
            yield _finding(service, v, options)
            continue
        restarts = _restarts(states[service], later[service])
        if restarts:
            yield Finding(
                message=f"restarted {restarts} times while watched for {options.observe}",
                subject=f"service {service}",
                code="container-restarting",
                expected=v.expected,
                found=f"restarting ({restarts} restarts in {options.observe})",
            )


def _wait_while_starting(
    project: str, services: tuple[str, ...], timeout: float
) -> dict[str, tuple[ContainerState, ...]]:
    """Look at the containers until no healthcheck is ``starting`` any more,
    or ``timeout`` seconds passed; the last look."""
    from fleetcore_docker.observe import project_containers, verdict

    deadline = time.monotonic() + timeout
    while True:
        states = project_containers(project, services)
        starting = any(verdict(states[s]).status == "pending" for s in services)
        left = deadline - time.monotonic()
        if not starting or left <= 0:
            return states
        time.sleep(min(POLL, left))


def _restarts(before: tuple[ContainerState, ...], after: tuple[ContainerState, ...]) -> int:
    counts = {c.id: c.restart_count for c in before}
    return sum(c.restart_count - counts[c.id] for c in after if c.id in counts)


def _finding(service: str, v: Verdict, options: ContainersOptions) -> Finding:
    message = v.message
    if v.status == "pending":
        message = f"{message} after {options.health_timeout}"
    return Finding(
        message=message,
        subject=f"service {service}",
        code=v.code,
        expected=v.expected,
        found=v.found,
    )
