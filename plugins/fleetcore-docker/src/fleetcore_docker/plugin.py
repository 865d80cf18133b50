"""The records this plugin registers (entry point ``compose`` of the group
``fleetcore``). See the package docstring for what they do, and
:mod:`fleetcore_docker.options` for their options."""

from __future__ import annotations

from collections.abc import Iterator

from fleetcore.plugin import hookimpl
from fleetcore.plugin.types import Activator, Check, DriftFix, ResourceProbe
from fleetcore_docker import checks
from fleetcore_docker.activator import ComposeActivator
from fleetcore_docker.basics import has_compose_file
from fleetcore_docker.options import (
    ComposeConfigOptions,
    ComposeOptions,
    ContainersOptions,
    LogsOptions,
    ResourcesOptions,
)

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
    from fleetcore_docker import usage

    yield Check(
        name="containers",
        summary="Every compose service runs, is healthy and is not restarting",
        run=checks.containers,
        config_type=ContainersOptions,
        applies=checks.applies,
    )
    # Opt-in: their limits are the role's to set.
    yield Check(
        name="logs",
        summary="Containers log no more error lines since activation than allowed",
        run=usage.logs,
        config_type=LogsOptions,
        applies=usage.applies,
        default=False,
    )
    yield Check(
        name="resources",
        summary="Containers stay under the role's restart, memory and CPU limits",
        run=usage.resources,
        config_type=ResourcesOptions,
        applies=usage.applies,
        default=False,
    )


@hookimpl
def fleetcore_register_resource_probes() -> Iterator[ResourceProbe]:
    def factory() -> object:
        from fleetcore_docker.usage import ContainerProbe

        return ContainerProbe()

    yield ResourceProbe(
        name="compose",
        summary="CPU, memory and restarts of the role's containers, for the status report",
        factory=factory,
    )


@hookimpl
def fleetcore_register_drift_checks() -> Iterator[Check]:
    # Imported here: an update cycle loads every plugin but runs no drift check.
    from fleetcore_docker import drift

    yield Check(
        name="containers",
        summary="Containers match the compose file: none missing, exited, extra or changed",
        run=drift.container_drift,
        config_type=drift.ContainerDriftOptions,
        applies=checks.applies,
    )


@hookimpl
def fleetcore_register_drift_fixes() -> Iterator[DriftFix]:
    from fleetcore_docker import drift

    yield DriftFix(
        name="compose-up",
        summary="`compose up -d --remove-orphans` for the running release",
        fixes=drift.FIXABLE,
        run=drift.compose_up,
    )
