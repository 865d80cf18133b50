"""Health checks on what a release's containers do once they run: the
``logs`` check (error lines since activation) and the ``resources`` check
(restarts, memory and CPU above the role's limits). Both are opt-in: a
role names them in ``[health] checks`` or gives their options table::

    [health.logs]
    patterns = ["(?i)error", "connection refused"]
    max_matches = 3            # more matching lines than this: the release is unhealthy

    [health.resources]
    max_restarts = 0
    max_memory = "200M"
    max_cpu_percent = 150      # 1.5 CPUs

Each problem is one finding naming the service::

    service db: 12 log lines match the error patterns since activation, at
        most 3 allowed; first: "FATAL: password authentication failed"

The logs are read from when the release was activated (the start of its
settle time); on a recheck of a release that runs, from when each container
last started.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from attrs import frozen

from fleetcore.activate.interface import project_name
from fleetcore.errors import FleetcoreError
from fleetcore.plugin.types import CheckContext, ContainerUsage, DeviceInfo, Finding
from fleetcore_docker.basics import has_compose_file
from fleetcore_docker.options import LogsOptions, ResourcesOptions

if TYPE_CHECKING:
    pass

SHOWN = 200
"""Characters of the first matching line a finding quotes."""


def applies(ctx: CheckContext) -> bool:
    return has_compose_file(ctx.release_dir)


@frozen(kw_only=True)
class Usage:
    """One container's resource use, from the engine's stats."""

    service: str
    name: str
    cpu_percent: float | None
    """Percent of one CPU between the engine's two readings."""
    memory_bytes: float | None
    """In use, less the page cache the kernel can drop."""
    memory_limit_bytes: float | None
    """The container's own limit; None without one."""
    restarts: int


def _containers(ctx: CheckContext, services: tuple[str, ...]) -> tuple[str, list[Any]]:
    """The project and the engine's containers of the services asked for."""
    from fleetcore_docker.compose import compose_project
    from fleetcore_docker.observe import PROJECT_LABEL, SERVICE_LABEL, docker_client

    project = ctx.project or project_name(ctx.device)
    client = docker_client()
    try:
        found = client.containers.list(
            filters={"label": f"{PROJECT_LABEL}={compose_project(project)}"},
            ignore_removed=True,
        )
    except OSError as exc:
        raise FleetcoreError(f"cannot list containers of {project}: {exc}") from None
    wanted = [
        c
        for c in found
        if not services or (c.attrs["Config"].get("Labels") or {}).get(SERVICE_LABEL) in services
    ]
    return project, wanted


def _service(container: Any) -> str:
    from fleetcore_docker.observe import SERVICE_LABEL

    return str((container.attrs["Config"].get("Labels") or {}).get(SERVICE_LABEL, ""))


def _started(container: Any) -> dt.datetime | None:
    text = container.attrs["State"].get("StartedAt") or ""
    try:
        # The engine gives nanoseconds; Python parses up to microseconds.
        return dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text))
    except ValueError:
        return None


def _masker(env: Any) -> Any:
    # The release's own settings (secrets among them) must not travel in a
    # finding's message to the status report: mask any that a line quotes.
    values = sorted(
        (v for k, v in env.items() if not k.startswith("FLEETCORE_") and len(v) >= 6),
        key=len,
        reverse=True,
    )

    def mask(text: str) -> str:
        for value in values:
            text = text.replace(value, "***")
        return text

    return mask


def logs(ctx: CheckContext) -> Iterator[Finding]:
    """The ``logs`` health check."""
    options: LogsOptions = ctx.options or LogsOptions()
    patterns = [re.compile(p) for p in options.patterns]
    mask = _masker(ctx.env)
    try:
        project, containers = _containers(ctx, options.services)
    except FleetcoreError as exc:
        yield Finding(message=str(exc), subject="docker", code="docker-unreachable")
        return
    counts: dict[str, tuple[int, str]] = {}
    for container in containers:
        since = ctx.activated_at or _started(container)
        try:
            raw = container.logs(
                stdout=True, stderr=True, since=since, tail=options.tail, timestamps=False
            )
        except OSError as exc:
            yield Finding(
                message=f"cannot read the logs of {container.name}: {exc}",
                subject=f"service {_service(container)}",
                code="docker-unreachable",
            )
            continue
        service = _service(container)
        count, first = counts.get(service, (0, ""))
        for line in raw.decode("utf-8", "replace").splitlines():
            if any(p.search(line) for p in patterns):
                count += 1
                first = first or line.strip()
        counts[service] = (count, first)
    for service, (count, first) in sorted(counts.items()):
        if count > options.max_matches:
            quoted = mask(first)[:SHOWN]
            yield Finding(
                message=f"{count} log lines match the error patterns since activation, "
                f'at most {options.max_matches} allowed; first: "{quoted}"',
                subject=f"service {service}",
                code="container-log-errors",
                expected=f"at most {options.max_matches} error lines",
                found=f"{count} error lines",
            )
    if not containers:
        yield Finding(
            message=f"no running container of project {project} to read logs from",
            subject=f"project {project}",
            code="container-missing",
        )


def usage(container: Any) -> Usage:
    """One container's resource use now (the engine takes two readings, about a second)."""
    stats = container.stats(stream=False)
    cpu = stats.get("cpu_stats") or {}
    pre = stats.get("precpu_stats") or {}
    cpu_percent = None
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    if system_delta > 0 and pre.get("system_cpu_usage"):
        online = cpu.get("online_cpus") or len(
            (cpu.get("cpu_usage") or {}).get("percpu_usage") or [1]
        )
        cpu_percent = round(100 * cpu_delta / system_delta * online, 1)
    memory = stats.get("memory_stats") or {}
    used = memory.get("usage")
    if used is not None:
        detail = memory.get("stats") or {}
        # cgroup v2 reports inactive_file, v1 total_inactive_file: the page
        # cache the kernel reclaims first, as `docker stats` leaves it out.
        used -= detail.get("inactive_file", detail.get("total_inactive_file", 0))
    limit = container.attrs["HostConfig"].get("Memory") or None
    return Usage(
        service=_service(container),
        name=container.name,
        cpu_percent=cpu_percent,
        memory_bytes=float(used) if used is not None else None,
        memory_limit_bytes=float(limit) if limit else None,
        restarts=int(container.attrs.get("RestartCount") or 0),
    )


def resources(ctx: CheckContext) -> Iterator[Finding]:
    """The ``resources`` health check."""
    options: ResourcesOptions = ctx.options or ResourcesOptions()
    try:
        _project, containers = _containers(ctx, options.services)
        measured = [usage(c) for c in containers]
    except (FleetcoreError, OSError) as exc:
        yield Finding(message=str(exc), subject="docker", code="docker-unreachable")
        return
    for u in measured:
        subject = f"service {u.service}"
        if u.restarts > options.max_restarts:
            yield Finding(
                message=f"container {u.name} was restarted {u.restarts} times, "
                f"at most {options.max_restarts} allowed",
                subject=subject,
                code="container-restarted",
                expected=f"at most {options.max_restarts} restarts",
                found=f"{u.restarts} restarts",
            )
        yield from _memory(u, options, subject)
        if (
            options.max_cpu_percent is not None
            and u.cpu_percent is not None
            and u.cpu_percent > options.max_cpu_percent
        ):
            yield Finding(
                message=f"container {u.name} uses {u.cpu_percent:g}% CPU, "
                f"at most {options.max_cpu_percent:g}% allowed",
                subject=subject,
                code="container-cpu-high",
                expected=f"at most {options.max_cpu_percent:g}% CPU",
                found=f"{u.cpu_percent:g}% CPU",
            )


def _memory(u: Usage, options: ResourcesOptions, subject: str) -> Iterator[Finding]:
    if u.memory_bytes is None:
        return
    mib = u.memory_bytes / 2**20
    if options.max_memory is not None and u.memory_bytes > options.max_memory.bytes:
        yield Finding(
            message=f"container {u.name} uses {mib:.1f} MiB of memory, "
            f"at most {options.max_memory} allowed",
            subject=subject,
            code="container-memory-high",
            expected=f"at most {options.max_memory}",
            found=f"{mib:.1f} MiB",
        )
    if u.memory_limit_bytes:
        percent = 100 * u.memory_bytes / u.memory_limit_bytes
        if percent > options.max_memory_percent:
            yield Finding(
                message=f"container {u.name} uses {percent:.0f}% of its memory limit "
                f"({mib:.1f} of {u.memory_limit_bytes / 2**20:.0f} MiB), "
                f"at most {options.max_memory_percent:g}% allowed",
                subject=subject,
                code="container-memory-high",
                expected=f"at most {options.max_memory_percent:g}% of the limit",
                found=f"{percent:.0f}%",
            )


class ContainerProbe:
    """The ``compose`` resource probe: each running container of the role's
    project, for the status report. The engine's one-shot stats answer at
    once; CPU is worked out from the counters' growth since the previous
    report, as the agent does for the device's own CPU."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}

    def containers(self, device: DeviceInfo, project: str) -> list[ContainerUsage]:
        import docker

        from fleetcore_docker.compose import compose_project
        from fleetcore_docker.observe import PROJECT_LABEL

        try:
            client = docker.from_env()
        except docker.errors.DockerException:
            return []  # no engine on this device: nothing to measure
        try:
            found = client.containers.list(
                filters={"label": f"{PROJECT_LABEL}={compose_project(project)}"},
                ignore_removed=True,
            )
            usages = [self._usage(c) for c in found]
        except (docker.errors.DockerException, OSError):
            return []
        finally:
            client.close()
        seen = {c.id for c in found}
        self._last = {k: v for k, v in self._last.items() if k in seen}
        return usages

    def _usage(self, container: Any) -> ContainerUsage:
        stats = container.stats(stream=False, one_shot=True)
        cpu = stats.get("cpu_stats") or {}
        total = int((cpu.get("cpu_usage") or {}).get("total_usage") or 0)
        system = int(cpu.get("system_cpu_usage") or 0)
        online = int(cpu.get("online_cpus") or 1)
        cpu_percent = None
        previous = self._last.get(container.id)
        if previous is not None and system > previous[1] and total >= previous[0]:
            cpu_percent = round(100 * (total - previous[0]) / (system - previous[1]) * online, 1)
        self._last[container.id] = (total, system)
        memory = stats.get("memory_stats") or {}
        used = memory.get("usage")
        if used is not None:
            detail = memory.get("stats") or {}
            used -= detail.get("inactive_file", detail.get("total_inactive_file", 0))
        limit = container.attrs["HostConfig"].get("Memory") or None
        return ContainerUsage(
            name=container.name,
            cpu_percent=cpu_percent,
            memory_bytes=float(used) if used is not None else None,
            memory_limit_bytes=float(limit) if limit else None,
            restarts=int(container.attrs.get("RestartCount") or 0),
        )
