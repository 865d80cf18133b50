"""Container drift: do the running containers match the release's compose file?

The ``containers`` drift check reports, per service: missing (removed by
hand), exited, restarting, unhealthy, and (deep checks, or ``config = true``)
a container whose configuration no longer matches the compose file (a
different image, a changed command) by Compose's own configuration hash;
plus containers of the project that the compose file does not have
(``extra``). The ``compose-up`` fix runs the release's activator again
(``compose up -d --remove-orphans``), which recreates what drifted, and
removes extra containers of the project Compose itself does not (a container
started by hand with the project's labels, which Compose v2 leaves alone).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from attrs import field, frozen

from fleetcore.activate.interface import project_name
from fleetcore.errors import FleetcoreError
from fleetcore.plugin.options import checked
from fleetcore.plugin.types import CheckContext, Finding
from fleetcore_docker import compose as cli
from fleetcore_docker.compose import AUTO, check_command
from fleetcore_docker.observe import project_containers, verdict

FIXABLE = frozenset(
    {
        "container-missing",
        "container-exited",
        "container-not-running",
        "container-extra",
        "container-config",
        "container-restarting",
        "container-unhealthy",
    }
)


@frozen(kw_only=True)
class ContainerDriftOptions:
    """``[drift.containers]`` options."""

    command: str = field(default=AUTO, validator=checked(check_command))
    config: bool = False
    """Compare configuration hashes on light checks too (deep checks always do)."""


def container_drift(ctx: CheckContext) -> Iterator[Finding]:
    options: ContainerDriftOptions = ctx.options or ContainerDriftOptions()
    project = ctx.project or project_name(ctx.device)
    try:
        compose = cli.resolve(options.command)
        services = cli.services(compose, ctx.release_dir, ctx.env)
        states = project_containers(project)
    except FleetcoreError as exc:
        yield Finding(message=str(exc), subject=f"project {project}", code="docker-unreachable")
        return
    for service in services:
        v = verdict(states.get(service, ()))
        if v.status == "failed":
            yield Finding(
                message=v.message,
                subject=f"service {service}",
                code=v.code,
                expected=v.expected,
                found=v.found,
            )
    for service in sorted(set(states) - set(services)):
        if states[service]:
            yield Finding(
                message="a container the release does not define",
                subject=f"service {service}",
                code="container-extra",
                expected="absent",
                found=states[service][0].state,
            )
    if ctx.deep or options.config:
        yield from _config_drift(compose, ctx, services, states)


def _config_drift(
    compose: cli.Compose, ctx: CheckContext, services: Sequence[str], states: dict
) -> Iterator[Finding]:
    what = "`compose config --hash`"
    argv = cli.command(compose, ctx.release_dir, "config", "--hash=*")
    try:
        proc = cli.check(
            cli.run(argv, cwd=ctx.release_dir, env=dict(ctx.env), timeout=60, what=what),
            ctx.env,
            what=what,
        )
    except FleetcoreError as exc:
        yield Finding(message=str(exc), subject="compose", code="compose-unavailable")
        return
    expected = dict(line.split(None, 1) for line in proc.stdout.splitlines() if " " in line)
    for service in services:
        want = expected.get(service, "").strip()
        for container in states.get(service, ()):
            if want and container.config_hash and container.config_hash != want:
                yield Finding(
                    message=f"container {container.name} does not match the compose "
                    "file (image or configuration changed)",
                    subject=f"service {service}",
                    code="container-config",
                    expected=f"config {want[:12]}",
                    found=f"config {container.config_hash[:12]}",
                )


def compose_up(ctx: CheckContext, findings: Sequence[Finding]) -> str:
    if ctx.repair is None:
        raise FleetcoreError("no repair kit: services can be restarted only by the agent")
    done = str(ctx.repair.restart())
    extra = [f.subject.removeprefix("service ") for f in findings if f.code == "container-extra"]
    if extra:
        # `--remove-orphans` takes only containers Compose itself made (v2
        # ignores one started by hand with the project's labels): remove the
        # rest by name, so the fix holds on every Compose version.
        removed = _remove_extra(ctx.project or project_name(ctx.device), extra)
        if removed:
            done += f"; removed {', '.join(removed)}"
    return done


def _remove_extra(project: str, services: Sequence[str]) -> list[str]:
    from fleetcore_docker.observe import docker_client

    client = docker_client()
    removed = []
    try:
        states = project_containers(project, client=client)
        for service in services:
            for container in states.get(service, ()):
                client.containers.get(container.id).remove(force=True)
                removed.append(container.name)
    except Exception as exc:  # the re-check says whether the fix held
        raise FleetcoreError(
            f"could not remove containers of {', '.join(services)}: {exc}"
        ) from None
    finally:
        client.close()
    return removed
