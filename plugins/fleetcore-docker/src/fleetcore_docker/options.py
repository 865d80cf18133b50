"""The options of this plugin's records, structured from ``role.toml``.

Each is the ``config_type`` of one record: the keys of its table in
``role.toml`` (``[activate]``, ``[validate.compose-config]``,
``[health.containers]``), checked strictly, so a misspelt key or a wrong type
is an error naming its key.
"""

from __future__ import annotations

import re

from attrs import field, frozen

from fleetcore.plugin.options import Duration, Size, between, checked
from fleetcore_docker.basics import AUTO, check_command


def positive(_inst: object, attr: object, value: Duration) -> None:
    if value.seconds <= 0:
        name = getattr(attr, "name", "value")
        raise ValueError(f"{name} must be longer than 0s, got {value}")


def not_negative(_inst: object, attr: object, value: Duration) -> None:
    # "-5s" does not parse, but a bare number in TOML does.
    if value.seconds < 0:
        name = getattr(attr, "name", "value")
        raise ValueError(f"{name} must not be negative, got {value.seconds:g} seconds")


@frozen(kw_only=True)
class ComposeOptions:
    """``[activate]`` options of the ``compose`` activator."""

    command: str = field(default=AUTO, validator=checked(check_command))
    """``auto`` finds ``docker compose`` (v2), then ``docker-compose`` (v1);
    or the command line to use (``"docker-compose"``, a path)."""
    pull: bool = False
    """Pull the images before starting, for tags that move (``:latest``). A
    failed pull is logged and the images at hand are used: a device that is
    offline keeps running, and can still roll back."""
    timeout: Duration = field(default=Duration(300), validator=checked(positive))
    """How long one Compose command may take before it is killed."""
    stop_timeout: Duration = field(default=Duration(10), validator=checked(not_negative))
    """How long containers get to stop (when replaced or removed) before they are killed."""


@frozen(kw_only=True)
class ComposeConfigOptions:
    """``[validate.compose-config]`` options of the ``compose-config`` check."""

    command: str = field(default=AUTO, validator=checked(check_command))
    """As the activator's ``command``."""
    timeout: Duration = field(default=Duration(60), validator=checked(positive))
    """How long ``config`` may take before it is killed."""


@frozen(kw_only=True)
class ContainersOptions:
    """``[health.containers]`` options of the ``containers`` check."""

    command: str = field(default=AUTO, validator=checked(check_command))
    """As the activator's ``command`` (used to list the services)."""
    health_timeout: Duration = field(default=Duration(60), validator=checked(not_negative))
    """How long to wait for containers whose healthcheck is still ``starting``."""
    observe: Duration = field(default=Duration(2), validator=checked(not_negative))
    """How long to watch running containers for restarts; ``0s`` to skip."""


def _cpu(_inst: object, attr: object, value: float | None) -> None:
    if value is not None and not 0 < value <= 100_000:
        name = getattr(attr, "name", "value")
        raise ValueError(f"{name} must be above 0, got {value}")


DEFAULT_PATTERNS = (r"(?i)\b(error|fatal|panic|exception|traceback)\b",)


def regexes(_inst: object, attr: object, value: tuple[str, ...]) -> None:
    name = getattr(attr, "name", "value")
    if not value:
        raise ValueError(f"{name} must list at least one pattern")
    for pattern in value:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{name}: {pattern!r} is not a regular expression: {exc}") from None


@frozen(kw_only=True)
class LogsOptions:
    """``[health.logs]`` options of the ``logs`` check."""

    patterns: tuple[str, ...] = field(default=DEFAULT_PATTERNS, validator=checked(regexes))
    """Regular expressions (Python's ``re``) a log line is an error for; any one matches."""
    max_matches: int = field(default=0, validator=checked(between(0, 1_000_000)))
    """How many matching lines a service may log before the check fails."""
    services: tuple[str, ...] = ()
    """The services to read; empty: every service of the compose file."""
    tail: int = field(default=5000, validator=checked(between(1, 1_000_000)))
    """At most this many of each container's newest lines are read."""


@frozen(kw_only=True)
class ResourcesOptions:
    """``[health.resources]`` options of the ``resources`` check."""

    max_restarts: int = field(default=0, validator=checked(between(0, 1_000_000)))
    """How often the engine may have restarted a container since compose created it."""
    max_memory: Size | None = None
    """Memory a container may use (``"200M"``); none: no absolute limit."""
    max_memory_percent: float = field(default=90.0, validator=checked(between(1, 100)))
    """Share of a container's own memory limit (``mem_limit``) it may use;
    containers without a limit are not checked against it."""
    max_cpu_percent: float | None = field(default=None, validator=checked(_cpu))
    """CPU a container may use, in percent of one CPU (200 is two CPUs); none: not checked."""
    services: tuple[str, ...] = ()
    """The services to look at; empty: every service of the compose file."""
