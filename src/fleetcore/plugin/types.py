"""The records plugins yield from register hooks, and the values hooks receive.

All of them are frozen attrs classes: a record, once registered, cannot be
changed by anyone. Options classes (``config_type``) are attrs classes too;
fleetcore structures the role's or agent's TOML table into them with cattrs,
so a typo in a key is reported with its path instead of being ignored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from attrs import field, frozen

from fleetcore.model import CheckKind, DeviceInfo, Finding
from fleetcore.plugin.protocols import (
    ActivatorImpl,
    AlertSender,
    EventPublisher,
    EventSubscriber,
    RepairKit,
    SecretsProviderImpl,
    Source,
    Strategy,
)

if TYPE_CHECKING:
    import logging

    from fleetcore.release import Manifest, Unpacked

__all__ = [
    "Activator",
    "AlertChannel",
    "Check",
    "CheckContext",
    "CheckKind",
    "DeviceInfo",
    "DriftFix",
    "DriftReport",
    "EventChannel",
    "Fetcher",
    "Finding",
    "ModeChange",
    "NoOptions",
    "RolloutStrategy",
    "SecretsProvider",
    "SourceSettings",
    "UpdateRecord",
    "UpdateResult",
    "UpdateStart",
]


@frozen
class NoOptions:
    """The options type of a plugin that takes none: any key is an error."""


def _name(_inst: object, _attr: object, value: str) -> None:
    if not value or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError(f"plugin record names are words like 'git-archive', got {value!r}")


def _words(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _codes(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


# -- identity -------------------------------------------------------------------


@frozen(kw_only=True)
class SourceSettings:
    """The core keys of ``[source]`` in ``agent.toml``, handed to fetchers."""

    repo: str
    branch: str = "main"
    cache_dir: Path = Path()
    """A folder the fetcher may keep between runs (e.g. a git mirror)."""
    progress: Callable[[str, int | None], Callable[[int], None]] | None = field(
        default=None, eq=False
    )
    """Set when a person watches a terminal (``agent once``, ``bundle
    create``); None in services. A fetcher that downloads may call
    ``update = progress("download <what>", total_bytes_or_None)`` once per
    download and ``update(bytes_so_far)`` as bytes arrive; it draws a meter,
    throttled by the caller. Reporting nothing is always allowed."""


# -- selectable strategies -------------------------------------------------------


@frozen(kw_only=True)
class Fetcher:
    """A way to fetch releases. ``factory(settings, options)`` returns a
    :class:`fleetcore.fetch.interface.Source`."""

    name: str = field(validator=_name)
    summary: str
    factory: Callable[[SourceSettings, Any], Source]
    config_type: type = NoOptions


@frozen(kw_only=True)
class Activator:
    """A way to switch services to a release. ``factory(options)`` returns an
    :class:`fleetcore.activate.interface.ActivatorImpl`.

    ``detect(release_dir)`` says whether this activator fits a role folder
    when the role does not name one; ``priority`` orders detection.
    """

    name: str = field(validator=_name)
    summary: str
    factory: Callable[[Any], ActivatorImpl]
    config_type: type = NoOptions
    detect: Callable[[Path], bool] | None = None
    priority: int = 0


@frozen(kw_only=True)
class SecretsProvider:
    """A source of secrets. ``factory(options)`` returns a
    :class:`fleetcore.secrets.interface.SecretsProviderImpl`.

    Options come from two places, kept apart on purpose:

    - ``config_type``: the device's settings, from ``[secrets.NAME]`` in
      ``agent.toml`` only (an identity file, a Vault address and login). A
      role comes from a repository that may be public: it must never choose
      where a device sends its credentials.
    - ``role_config_type``: what a role asks for, from ``[secrets.NAME]`` in
      its ``role.toml`` (e.g. which Vault paths to read); handed to
      ``provide`` as ``ctx.role_options``.

    ``detect(release_dir)`` says whether a role uses this provider without
    naming it (e.g. it contains ``*.age`` files)."""

    name: str = field(validator=_name)
    summary: str
    factory: Callable[[Any], SecretsProviderImpl]
    config_type: type = NoOptions
    role_config_type: type = NoOptions
    detect: Callable[[Path], bool] | None = None


@frozen(kw_only=True)
class RolloutStrategy:
    """A rule for which devices may take a commit. ``factory(options)`` returns
    a :class:`fleetcore.rollout.interface.Strategy`."""

    name: str = field(validator=_name)
    summary: str
    factory: Callable[[Any], Strategy]
    config_type: type = NoOptions


@frozen(kw_only=True)
class EventChannel:
    """A way to carry the server's events to devices, beside its SSE stream.

    - ``publisher(options)`` runs in the server and returns a
      :class:`fleetcore.channels.interface.EventPublisher`;
    - ``subscriber(options, device_id, wake)`` runs in the agent and returns a
      :class:`fleetcore.channels.interface.EventSubscriber` that calls
      ``wake(name)`` for each of the device's events.

    Both get ``options`` of ``config_type``: on the agent from
    ``[events.NAME]`` in ``agent.toml``; on the server from
    ``--events URL``, as ``{"url": URL without its query, **query
    parameters}`` (``--events NAME`` gives the query parameters alone).
    ``schemes`` are the URL schemes that select this channel (default: its
    name), e.g. ``("mqtt", "mqtts")``.

    Optional: ``fleet_subscriber(options, wake)`` listens for the events of
    every device at once and calls ``wake(device_id, name)``; one connection
    instead of one per device, for whatever stands in for many devices (a
    site gateway, ``fleetcore simulate``). Without it, such a program starts
    one ``subscriber`` per device.
    """

    name: str = field(validator=_name)
    summary: str
    publisher: Callable[[Any], EventPublisher]
    subscriber: Callable[[Any, str, Callable[[str], None]], EventSubscriber]
    config_type: type = NoOptions
    schemes: tuple[str, ...] = field(default=(), converter=_words)
    fleet_subscriber: Callable[[Any, Callable[[str, str], None]], EventSubscriber] | None = None


@frozen(kw_only=True)
class AlertChannel:
    """A way to tell operators what needs them: a webhook, Alertmanager, a
    pager, a chat room.

    ``sender(options)`` runs in the server and returns a
    :class:`fleetcore.alerts.interface.AlertSender`; ``options`` are of
    ``config_type``, from ``--alerts URL`` as ``{"url": URL without its
    query, **query parameters}`` (``--alerts NAME?key=value`` gives the
    query parameters alone). ``schemes`` are the URL schemes that select
    this channel (default: its name), e.g. ``("http", "https")``.
    """

    name: str = field(validator=_name)
    summary: str
    sender: Callable[[Any], AlertSender]
    config_type: type = NoOptions
    schemes: tuple[str, ...] = field(default=(), converter=_words)


# -- checks ---------------------------------------------------------------------


@frozen(kw_only=True)
class CommitProof:
    """The git objects that tie a role's files to a commit id: the raw
    commit object (with its signature, if any), its root tree and the root's
    ``roles`` tree. Each hashes to the id its parent names, so a device
    without git can check a signature and that the release is that commit's.
    Given by a source's optional ``proof(commit, role)``."""

    commit_object: bytes
    root_tree: bytes
    roles_tree: bytes


@frozen(kw_only=True)
class CheckContext:
    """What a check gets: the release it looks at and the device around it."""

    kind: CheckKind
    device: DeviceInfo
    release_dir: Path
    commit: str
    manifest: Manifest | None
    options: Any
    """The check's options, structured into its ``config_type``."""
    log: logging.Logger | logging.LoggerAdapter[logging.Logger]
    env: Mapping[str, str] = field(factory=dict)
    """Environment for anything the check runs (``FLEETCORE_*`` variables)."""
    unpacked: Unpacked | None = None
    """For verify checks: what the unpacker measured of each file."""
    activator: str | None = None
    """The name of the activator of this release, once known."""
    project: str = ""
    """The stable name of the device's services across releases
    (``fleetcore-<role>``), e.g. the compose project the activator used."""
    deep: bool = False
    """For drift checks: a deep (content) rather than light check."""
    desired_commit: str | None = None
    """For drift checks: the commit the device should run, if known."""
    state_dir: Path | None = None
    """The agent's state folder."""
    check_options: Mapping[str, Any] = field(factory=dict)
    """For drift fixes: the options of the drift checks that ran, by check name."""
    repair: RepairKit | None = None
    """For drift fixes: what they may ask of the agent (a verified pristine
    copy of the release, old-release cleanup, restarting services); None
    where no agent runs the checks."""
    now: dt.datetime = field(factory=lambda: dt.datetime.now(dt.UTC))
    activated_at: dt.datetime | None = None
    """For health checks after an update: when the release was activated (its
    settle time began), e.g. to read logs from then on; None on a recheck of
    the release that runs."""
    proof: CommitProof | None = None
    """For verify checks: the commit's objects, when the device asks for a
    verify check in ``agent.toml`` and its source can give them."""


@frozen(kw_only=True)
class ContainerUsage:
    """One container's resource use, as a resource probe measured it for the
    device's status report (and the server's ``fleetcore_container_*`` series)."""

    name: str
    cpu_percent: float | None = None
    """Percent of one CPU since the previous measurement (above 100 on several)."""
    memory_bytes: float | None = None
    memory_limit_bytes: float | None = None
    """The container's own limit; None without one."""
    restarts: int = 0


@frozen(kw_only=True)
class ResourceProbe:
    """Measures what the device runs, for each status report.

    ``factory()`` is called once per agent process; the object it returns
    has ``containers(device, project) -> Iterable[ContainerUsage]``, called
    before each status report (so it may keep the last readings to work out
    rates). ``project`` is the stable name of the device's services
    (``fleetcore-<role>``). A probe with nothing to measure here (no
    container engine on this device) returns nothing; one that raises is
    logged and left out of that report.
    """

    name: str = field(validator=_name)
    summary: str
    factory: Callable[[], Any]


@frozen(kw_only=True)
class Check:
    """A named check. ``run(ctx)`` returns or yields :class:`Finding` objects,
    nothing when all is well; raising is reported as a failed finding.

    ``applies(ctx)`` says whether the check has anything to look at for this
    release when the role does not select checks explicitly (``health.sh``
    exists, a compose file exists, options were given, ...). A check with
    ``default=False`` runs only when a role selects it by name.
    """

    name: str = field(validator=_name)
    summary: str
    run: Callable[[CheckContext], Iterable[Finding] | None]
    config_type: type = NoOptions
    applies: Callable[[CheckContext], bool] | None = None
    default: bool = True
    network: bool = False
    """The check needs the network (e.g. name resolution): the agent skips it
    while the device cannot reach its fleet repo or server, where it would
    only repeat what the outage already says."""


@frozen(kw_only=True)
class DriftFix:
    """A repair for drift findings whose ``code`` is in ``fixes``.

    ``run(ctx, findings)`` repairs what it can and returns a short description
    of what it did; the checks are then run again to see whether it held.
    With ``ctx.options`` of the fix's ``config_type``. A fix that cannot act
    on this device (nothing configured) raises
    :class:`fleetcore.errors.FixUnavailable`: the drift stays reported, and it
    is not a failed fix (no safe mode).
    """

    name: str = field(validator=_name)
    summary: str
    fixes: frozenset[str] = field(converter=_codes)
    run: Callable[[CheckContext, tuple[Finding, ...]], str]
    config_type: type = NoOptions


# -- lifecycle events -----------------------------------------------------------

UpdateResult = Literal["success", "rollback", "failed", "skipped"]


@frozen(kw_only=True)
class UpdateStart:
    device: DeviceInfo
    from_commit: str | None
    to_commit: str
    reason: str
    """Why this commit: ``rollout``, ``pin``, ``lock``, ``override``, ``bundle``."""


@frozen(kw_only=True)
class UpdateRecord:
    """One line of the update history (the seed's ``update_history`` entry)."""

    timestamp: dt.datetime
    device_id: str
    role: str
    from_commit: str | None
    to_commit: str | None
    result: UpdateResult
    reason: str = ""
    duration_seconds: float = 0.0
    event: str = "update"
    """``update`` for updates; ``drift`` (a drift run that found something:
    ``success`` when all was fixed, ``failed`` when drift was left), ``mode``
    (safe mode or network mode changed) and ``outage`` (the fleet repo was
    unreachable for ``duration_seconds``) for the device's other events."""


@frozen(kw_only=True)
class DriftReport:
    device: DeviceInfo
    commit: str | None
    findings: tuple[Finding, ...]
    fixed: tuple[str, ...] = ()
    left: tuple[Finding, ...] = ()


@frozen(kw_only=True)
class ModeChange:
    device: DeviceInfo
    old: str
    new: str
    reason: str


# -- command line ------------------------------------------------------------------

if TYPE_CHECKING:
    import click


def _command_name(_inst: object, _attr: object, value: str) -> None:
    if not value or not value[0].isalpha() or not all(c.isalnum() or c in "-_" for c in value):
        raise ValueError(f"command names are words like 'secrets', got {value!r}")


@frozen(kw_only=True)
class CliCommand:
    """A command (or group of commands) a plugin adds to ``fleetcore``.

    ``factory()`` returns the :class:`click.Command` and is called only when
    the command runs or its help is shown, so that ``fleetcore plugins`` and
    ``fleetcore --help`` list the command without importing its module.
    The command receives the application object with ``@click.pass_obj``
    (:class:`fleetcore.cli.app.App`: ``app.plugins()``, ``app.abort()``,
    ``app.print_json()``).
    """

    name: str = field(validator=_command_name)
    """The word after ``fleetcore``: ``fleetcore NAME ...``. It must not be
    one of the core's commands (``agent``, ``server``, ...)."""
    summary: str
    """One line for ``fleetcore --help`` and ``fleetcore plugins``."""
    factory: Callable[[], click.Command]
