"""The extension contract of fleetcore: every hook a plugin can implement.

A plugin is any Python module or object with functions named after the hooks
below and marked with :data:`fleetcore.plugin.hookimpl`. Installed packages
register through the ``fleetcore`` entry-point group::

    # pyproject.toml of a plugin package
    [project.entry-points.fleetcore]
    tcp-port = "fleetcore_example.plugin"

There are three kinds of hooks.

**Register hooks** (``fleetcore_register_*``) are called once per process,
lazily, the first time fleetcore needs that kind of thing. They take no
arguments and return (or yield) records from :mod:`fleetcore.plugin.types`.
Each record has a ``name``; configuration selects records by that name, per
role. Two plugins registering the same name is an error that names both.

**Check hooks** register named checks run by one isolated runner: a check
that raises becomes a failed finding, never a crash of the agent.

**Lifecycle hooks** are broadcast notifications for observers (metrics,
logging, alerting). Every implementation is called; their return values are
ignored, and an exception in one is logged and does not stop the others or
the update.

Every hook below says when it is called, what it gets and what it must return.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from fleetcore.plugin.linting import Linter
    from fleetcore.plugin.types import (
        Activator,
        AlertChannel,
        Check,
        CliCommand,
        DriftFix,
        DriftReport,
        EventChannel,
        Fetcher,
        ModeChange,
        ResourceProbe,
        RolloutStrategy,
        SecretsProvider,
        UpdateRecord,
        UpdateStart,
    )

PROJECT_NAME = "fleetcore"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)


# -- selected by name ---------------------------------------------------------


@hookspec
def fleetcore_register_fetchers() -> Iterable[Fetcher]:
    """Register ways of bringing a role's files from the fleet repo to the device.

    Called when the agent or ``fleetcore plugins`` first needs fetchers.
    Return or yield :class:`~fleetcore.plugin.types.Fetcher` records. The
    agent picks one with ``[source] fetcher = "NAME"`` in ``agent.toml``; the
    other keys of ``[source]`` (besides ``repo``, ``branch`` and ``fetcher``)
    are structured into the record's ``config_type``.

    Example::

        @hookimpl
        def fleetcore_register_fetchers():
            yield Fetcher(
                name="s3",
                summary="Role archives from an S3 bucket",
                config_type=S3Options,
                factory=lambda source, options: S3Source(source, options),
            )

    The object ``factory`` returns implements
    :class:`fleetcore.fetch.interface.Source`.
    """


@hookspec
def fleetcore_register_activators() -> Iterable[Activator]:
    """Register ways of switching a device's services to a release.

    Called when the agent first needs an activator. Return or yield
    :class:`~fleetcore.plugin.types.Activator` records. A role selects one
    with ``[activate] plugin = "NAME"`` in its ``role.toml``; otherwise the
    first activator whose ``detect(release_dir)`` is true wins, in order of
    ``priority`` (highest first), so a ``docker-compose.yml`` selects
    ``compose`` before an ``activate.sh`` selects ``script``.

    The object ``factory(options)`` returns implements
    :class:`fleetcore.activate.interface.ActivatorImpl`.
    """


@hookspec
def fleetcore_register_secrets_providers() -> Iterable[SecretsProvider]:
    """Register sources of secrets that are put into a release before validation.

    Called when a role's release is unpacked and the role lists secrets
    providers (``[secrets] providers = [...]`` in ``role.toml``), or contains
    files the provider claims (``detect``). Return or yield
    :class:`~fleetcore.plugin.types.SecretsProvider` records. The object
    ``factory(options)`` returns implements
    :class:`fleetcore.secrets.interface.SecretsProviderImpl`.
    """


@hookspec
def fleetcore_register_rollout_strategies() -> Iterable[RolloutStrategy]:
    """Register rules that decide whether a device may take a commit.

    Called when the fleet policy (``fleet.toml`` in git-only mode, the server
    in managed mode) names a rollout strategy. Return or yield
    :class:`~fleetcore.plugin.types.RolloutStrategy` records; a fleet selects
    one per role with ``[rollout] strategy = "NAME"`` or
    ``[roles.ROLE.rollout] strategy = "NAME"``, the other keys of that table
    being the strategy's options. The server and the agent call the same
    strategy, so a device can double-check what it is told.

    The object ``factory(options)`` returns implements
    :class:`fleetcore.rollout.interface.Strategy`. Its ``eligible`` must be
    a pure function of the device, the commit and the options: the server
    builds one strategy per rollout step and remembers which devices a
    step targets (for up to 30 s within a fleet generation), so a strategy
    that reads the clock or the network would be asked less than it expects.
    """


@hookspec
def fleetcore_register_event_channels() -> Iterable[EventChannel]:
    """Register ways of carrying the server's events to devices, beside SSE.

    Called by ``fleetcore server run`` when ``--events`` names a channel, by
    the agent when ``[server] events = "NAME"`` in ``agent.toml`` selects one
    (``"sse"``, the default, is the server's own stream and needs no plugin),
    and by ``fleetcore plugins``. Return or yield
    :class:`~fleetcore.plugin.types.EventChannel` records. The server selects
    channels by URL scheme or name (``--events mqtt://broker:1883``) and hands
    every batch of events to each selected channel's publisher; the agent
    starts the subscriber of the one it selected, with the options of its
    ``[events.NAME]`` table.

    Events only wake a device early: it then asks the server's authenticated
    ``/desired`` endpoint, so a channel needs no authentication of its own to
    be safe (a forged event costs one extra poll).

    Example::

        @hookimpl
        def fleetcore_register_event_channels():
            yield EventChannel(
                name="nats",
                summary="Events over a NATS server",
                schemes=("nats",),
                config_type=NatsOptions,   # url, subject prefix, credentials
                publisher=lambda options: NatsPublisher(options),
                subscriber=lambda options, device_id, wake: NatsSubscriber(
                    options, device_id, wake
                ),
            )

    The objects the factories return implement
    :class:`fleetcore.channels.interface.EventPublisher` and
    :class:`fleetcore.channels.interface.EventSubscriber`.
    """


@hookspec
def fleetcore_register_alert_channels() -> Iterable[AlertChannel]:
    """Register ways of telling operators what needs them (alerts).

    Called by ``fleetcore server run`` when ``--alerts`` is given, and by
    ``fleetcore plugins``. Return or yield
    :class:`~fleetcore.plugin.types.AlertChannel` records. The server
    selects channels by URL scheme or name (``--alerts https://hooks.example/x``,
    ``--alerts alertmanager://am:9093``) and hands each selected channel's
    sender every :class:`~fleetcore.model.Alert` it raises (an incident's
    level, a device in safe mode or offline, a rollout halted), in batches,
    from a thread of the channel's own. A ``send`` that raises is retried
    with back-off, so a sender need not retry by itself; it must give up
    within its own timeout rather than hang.

    Example::

        @hookimpl
        def fleetcore_register_alert_channels():
            yield AlertChannel(
                name="ntfy",
                summary="Alerts as ntfy.sh push notifications",
                schemes=("ntfy",),
                config_type=NtfyOptions,   # url, topic, token
                sender=lambda options: NtfySender(options),
            )

    The object ``sender`` returns implements
    :class:`fleetcore.alerts.interface.AlertSender`.
    """


@hookspec
def fleetcore_register_commands() -> Iterable[CliCommand]:
    """Register commands of the ``fleetcore`` command line.

    Called when ``fleetcore`` is asked for a command that is not one of the
    core's (``agent``, ``server``, ``config``, ...), and by ``fleetcore
    --help`` and ``fleetcore plugins`` to list them; never on the way to a
    core command, so a plugin's commands cost nothing to ``fleetcore agent
    once``. Takes no arguments. Return or yield
    :class:`~fleetcore.plugin.types.CliCommand` records: a name, a one-line
    summary and a ``factory`` that returns the :class:`click.Command` (or
    group). Keep the click code in its own module and import it in the
    factory, so listing the command imports nothing heavy.

    A name that is also a core command is an error naming both; two plugins
    registering one name is an error naming both plugins.

    Example::

        @hookimpl
        def fleetcore_register_commands():
            def load():
                from fleetcore_age.cli import secrets

                return secrets

            yield CliCommand(
                name="secrets",
                summary="Device keys and age-encrypted secrets in the fleet repo",
                factory=load,
            )

    The command gets the CLI's application object with ``@click.pass_obj``
    (:class:`fleetcore.cli.app.App`).
    """


# -- checks --------------------------------------------------------------------


@hookspec
def fleetcore_register_verify_checks() -> Iterable[Check]:
    """Register checks of a fetched release's integrity and authenticity.

    Called once per process before the first verification. Verify checks run
    on the unpacked staging copy of a release, before secrets are added and
    before anything runs from it; ``ctx.manifest`` is the trusted
    manifest and ``ctx.unpacked`` what the unpacker measured. Any failed
    finding refuses the release. The agent refuses to activate a release that
    no verify check looked at.

    Return or yield :class:`~fleetcore.plugin.types.Check` records.
    """


@hookspec
def fleetcore_register_validate_checks() -> Iterable[Check]:
    """Register checks that a release is fit to activate on this device.

    Called once per process before the first validation. Validate checks run
    in the unpacked release folder after secrets were added and before the
    activator switches to it (e.g. ``validate.sh``, ``docker compose
    config``). Any failed finding keeps the current release running.

    Return or yield :class:`~fleetcore.plugin.types.Check` records.
    """


@hookspec
def fleetcore_register_health_checks() -> Iterable[Check]:
    """Register checks that an activated release is healthy.

    Called once per process before the first health check. Health checks run
    after the role's settle time (``[health] settle``); any failed finding
    rolls the device back to its previous release. They are also used by
    ``fleetcore agent status`` and the periodic checks.

    Return or yield :class:`~fleetcore.plugin.types.Check` records.
    """


@hookspec
def fleetcore_register_drift_checks() -> Iterable[Check]:
    """Register checks that compare the running device with its release.

    Called once per process before the first drift check (light every few
    minutes, deep every hour, or ``fleetcore agent check``). ``ctx.deep`` says
    which. A failed finding should carry a ``code`` that drift fixes can
    claim (``container-exited``, ``file-changed``, ...).

    Return or yield :class:`~fleetcore.plugin.types.Check` records.
    """


@hookspec
def fleetcore_register_drift_fixes() -> Iterable[DriftFix]:
    """Register repairs for drift findings (the drift-fix extension point).

    Called once per process before the first repair. A
    :class:`~fleetcore.plugin.types.DriftFix` names the finding codes it can
    repair; after it runs, the check that found the drift runs again, and a
    fix that did not hold counts as a failure.
    """


# -- the fleet repository -------------------------------------------------------


@hookspec
def fleetcore_register_linters() -> Iterable[Linter]:
    """Register linters: checks of a fleet repository before any device sees it.

    Called once by ``fleetcore lint`` (and the pre-commit hook and CI
    workflows that run it). Return or yield
    :class:`~fleetcore.plugin.linting.Linter` records; ``run(ctx)`` gets a
    :class:`~fleetcore.plugin.linting.LintContext` (the checkout and its
    files) and returns or yields :class:`~fleetcore.plugin.linting.Problem`
    values, each with a file and a line. Every linter runs, each isolated: one
    that raises is reported as a problem and the others still run.

    Example::

        @hookimpl
        def fleetcore_register_linters():
            def no_tabs(ctx):
                for name in ctx.select("*.yml", "*.yaml"):
                    for n, line in enumerate(ctx.path(name).read_text().splitlines(), 1):
                        if "\\t" in line:
                            yield Problem(path=name, line=n, message="tab in YAML")

            yield Linter(name="no-tabs", summary="No tabs in YAML", run=no_tabs)

    The tutorial is :mod:`fleetcore.lint.interface`.
    """


# -- lifecycle notifications ----------------------------------------------------


@hookspec
def fleetcore_update_started(event: UpdateStart) -> None:
    """Called when the agent starts an update to a new release.

    ``event`` is an :class:`~fleetcore.plugin.types.UpdateStart`. The return
    value is ignored; an exception is logged and does not stop the update.
    """


@hookspec
def fleetcore_update_finished(record: UpdateRecord) -> None:
    """Called when an update ends, whatever the result.

    ``record`` is the :class:`~fleetcore.plugin.types.UpdateRecord` written to
    the update history: ``result`` is ``success``, ``rollback``, ``failed`` or
    ``skipped``. The return value is ignored.
    """


@hookspec
def fleetcore_drift_found(report: DriftReport) -> None:
    """Called after a drift check that found drift, with what was fixed.

    ``report`` is a :class:`~fleetcore.plugin.types.DriftReport`. The return
    value is ignored.
    """


@hookspec
def fleetcore_mode_changed(change: ModeChange) -> None:
    """Called when the device changes mode (normal, safe_mode, isolated, ...).

    ``change`` is a :class:`~fleetcore.plugin.types.ModeChange`. The return
    value is ignored.
    """


@hookspec
def fleetcore_register_resource_probes() -> Iterable[ResourceProbe]:
    """Register ways of measuring what a device runs, for its status report.

    Called by the agent before its first status report in managed mode, and
    by ``fleetcore plugins``. Return or yield
    :class:`~fleetcore.plugin.types.ResourceProbe` records. Every installed
    probe runs (there is nothing to select): the agent builds each once and
    asks it for :class:`~fleetcore.plugin.types.ContainerUsage` values before
    each report; the server exports them as ``fleetcore_container_*``.
    The core measures CPU, memory, disk and network itself; probes add what
    only a plugin can see (containers).

    Example::

        @hookimpl
        def fleetcore_register_resource_probes():
            yield ResourceProbe(
                name="podman",
                summary="CPU, memory and restarts of the role's Podman containers",
                factory=PodmanProbe,   # .containers(device, project) -> [ContainerUsage]
            )
    """


REGISTER_HOOKS = {
    "fetcher": "fleetcore_register_fetchers",
    "activator": "fleetcore_register_activators",
    "secrets provider": "fleetcore_register_secrets_providers",
    "rollout strategy": "fleetcore_register_rollout_strategies",
    "event channel": "fleetcore_register_event_channels",
    "alert channel": "fleetcore_register_alert_channels",
    "command": "fleetcore_register_commands",
    "verify check": "fleetcore_register_verify_checks",
    "validate check": "fleetcore_register_validate_checks",
    "health check": "fleetcore_register_health_checks",
    "drift check": "fleetcore_register_drift_checks",
    "drift fix": "fleetcore_register_drift_fixes",
    "linter": "fleetcore_register_linters",
    "resource probe": "fleetcore_register_resource_probes",
}
"""Kind of named thing -> the register hook that provides it."""

LIFECYCLE_HOOKS = (
    "fleetcore_update_started",
    "fleetcore_update_finished",
    "fleetcore_drift_found",
    "fleetcore_mode_changed",
)
