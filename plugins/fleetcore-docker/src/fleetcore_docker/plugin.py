"""The records this plugin registers (entry point ``compose`` of the group
``fleetcore``). See the package docstring for what they do, and
:mod:`fleetcore_docker.options` for their options."""

from __future__ import annotations

from collections.abc import Iterator

from fleetcore.plugin import hookimpl
from fleetcore.plugin.types import Activator, Check
from fleetcore_docker import checks
from fleetcore_docker.activator import ComposeActivator
from fleetcore_docker.compose import has_compose_file
from fleetcore_docker.options import ComposeConfigOptions, ComposeOptions, ContainersOptions

PRIORITY = 100
"""Above the script activator: a role with a compose file is a compose role."""


@hookimpl
def fleetcore_register_activators() -> Iterator[Activator]:
    yield Activator(
        name="compose",
        summary="Runs the release's compose file: `compose up -d` under the role's project",
        factory=ComposeActivator,
        config_type=ComposeOptions,
        detect=has_compose_file,
        priority=PRIORITY,
    )


@hookimpl
def fleetcore_register_validate_checks() -> Iterator[Check]:
    yield Check(
        name="compose-config",
        summary="Compose accepts the compose file (`compose config -q`)",
        run=checks.compose_config,
        config_type=ComposeConfigOptions,
        applies=checks.applies,
    )


@hookimpl
def fleetcore_register_health_checks() -> Iterator[Check]:
    yield Check(
        name="containers",
        summary="Every compose service runs, is healthy and is not restarting",
        run=checks.containers,
        config_type=ContainersOptions,
        applies=checks.applies,
    )
