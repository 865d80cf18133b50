"""The plugin system's public face: what plugin authors import.

Everything a plugin needs to register records and implement them is here::

    from fleetcore.plugin import Check, CheckContext, Finding, hookimpl

    @hookimpl
    def fleetcore_register_health_checks():
        yield Check(name="disk", summary="Disk not full", run=check_disk)

With :mod:`fleetcore.plugin.options` (options classes: units, validators),
:mod:`fleetcore.plugin.release` (manifests, measuring files, git trees),
:mod:`fleetcore.errors` and :mod:`fleetcore.testing` (conformance kits and
test services), this is the whole public API; the list is in
``docs/plugins.md`` ("Public API"). Anything else in fleetcore may change
without notice. Each kind's tutorial is in its interface module
(``fleetcore.fetch.interface``, ``fleetcore.activate.interface``, ...), which
exports the same names.
"""

import pluggy

from fleetcore.files import atomic_write
from fleetcore.model import (
    SEGMENTS,
    Alert,
    CheckKind,
    DeviceInfo,
    Event,
    Finding,
    percentage_bucket,
)
from fleetcore.plugin.hookspecs import PROJECT_NAME
from fleetcore.plugin.protocols import (
    ENV_FILE,
    EVENT_NAMES,
    ActivationContext,
    ActivatorImpl,
    AlertSender,
    CommandApp,
    ControlServerSecrets,
    EventPublisher,
    EventSubscriber,
    Fetched,
    RepairKit,
    SecretsContext,
    SecretsProviderImpl,
    Source,
    Strategy,
    project_name,
)
from fleetcore.plugin.types import (
    Activator,
    AlertChannel,
    Check,
    CheckContext,
    CliCommand,
    CommitProof,
    ContainerUsage,
    DriftFix,
    DriftReport,
    EventChannel,
    Fetcher,
    ModeChange,
    NoOptions,
    ResourceProbe,
    RolloutStrategy,
    SecretsProvider,
    SourceSettings,
    UpdateRecord,
    UpdateResult,
    UpdateStart,
)

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's hook implementations (``@hookimpl``)."""

__all__ = [
    "ENV_FILE",
    "EVENT_NAMES",
    "SEGMENTS",
    "ActivationContext",
    "Activator",
    "ActivatorImpl",
    "Alert",
    "AlertChannel",
    "AlertSender",
    "Check",
    "CheckContext",
    "CheckKind",
    "CliCommand",
    "CommandApp",
    "CommitProof",
    "ContainerUsage",
    "ControlServerSecrets",
    "DeviceInfo",
    "DriftFix",
    "DriftReport",
    "Event",
    "EventChannel",
    "EventPublisher",
    "EventSubscriber",
    "Fetched",
    "Fetcher",
    "Finding",
    "ModeChange",
    "NoOptions",
    "RepairKit",
    "ResourceProbe",
    "RolloutStrategy",
    "SecretsContext",
    "SecretsProvider",
    "SecretsProviderImpl",
    "Source",
    "SourceSettings",
    "Strategy",
    "UpdateRecord",
    "UpdateResult",
    "UpdateStart",
    "atomic_write",
    "hookimpl",
    "percentage_bucket",
    "project_name",
]
