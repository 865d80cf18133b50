"""The options of this plugin's records, structured from ``role.toml``.

Each is the ``config_type`` of one record: the keys of its table in
``role.toml`` (``[activate]``, ``[validate.compose-config]``,
``[health.containers]``), checked strictly, so a misspelt key or a wrong type
is an error naming its key.
"""

from __future__ import annotations

from attrs import field, frozen

from fleetcore.plugin.options import Duration, checked
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
