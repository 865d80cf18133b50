"""Drift checks and their repairs, standard library only.

Checks (``[drift]`` of ``role.toml`` selects and configures them):

- ``release``: the device runs the commit it should (informational: the
  update cycle converges it).
- ``files``: the release's files are as they were activated. Light: size,
  modification time and mode against the snapshot taken after activation.
  Deep: sha256 of every file against the release manifest.
- ``folders``: required folders exist with their owner, group and mode
  (``[drift.folders] folders = [{path = "/var/lib/app", owner = "app", mode = "0750"}]``).
- ``disk``: free space on the state folder's disk above ``min_free``.
- ``clock``: the system's time service reports an offset under ``max_offset``
  (``chronyc tracking``, else ``timedatectl``'s synchronised flag).
- ``dns``: the names in ``[drift.dns] names`` resolve (skipped while the
  device cannot reach its fleet repo or server: it needs the network).

Fixes: ``restore-files`` (changed, missing or re-moded files copied back from
a freshly fetched and verified copy of the release), ``repair-folders``,
``free-disk`` (old releases and leftovers removed), ``sync-clock``
(``chronyc makestep`` or a configured command) and ``restart-network`` (a
configured command, where the platform allows one). A fix with no command
configured leaves its drift reported (the device shows it) without counting
as a failed fix: it does not put the device in safe mode.

This module only registers them: the checks, their options and the fixes are
in :mod:`fleetcore_checks._drift`, imported the first time fleetcore asks for
drift checks or fixes. An update cycle loads every plugin but runs no drift
check, so it does not pay for them.
"""

from __future__ import annotations

from collections.abc import Iterator

from fleetcore.plugin import hookimpl
from fleetcore.plugin.types import Check, DriftFix

# -- registration ---------------------------------------------------------------------


@hookimpl
def fleetcore_register_drift_checks() -> Iterator[Check]:
    from fleetcore_checks._drift import (
        ClockOptions,
        DiskOptions,
        DnsOptions,
        FilesOptions,
        FoldersOptions,
        check_clock,
        check_disk,
        check_dns,
        check_files,
        check_folders,
        check_release,
    )

    yield Check(name="release", summary="The device runs the commit it should", run=check_release)
    yield Check(
        name="files",
        summary="Release files are as activated (light: size and time; deep: sha256)",
        run=check_files,
        config_type=FilesOptions,
    )
    yield Check(
        name="folders",
        summary="Required folders exist with owner and mode",
        run=check_folders,
        config_type=FoldersOptions,
        applies=lambda ctx: bool(ctx.options and ctx.options.folders),
    )
    yield Check(
        name="disk",
        summary="Free disk space above a threshold",
        run=check_disk,
        config_type=DiskOptions,
    )
    yield Check(
        name="clock",
        summary="The clock is synchronised (NTP offset)",
        run=check_clock,
        config_type=ClockOptions,
        applies=lambda ctx: ctx.deep,
    )
    yield Check(
        name="dns",
        summary="Names resolve",
        run=check_dns,
        config_type=DnsOptions,
        applies=lambda ctx: bool(ctx.options and ctx.options.names),
        network=True,
    )


@hookimpl
def fleetcore_register_drift_fixes() -> Iterator[DriftFix]:
    from fleetcore_checks._drift import (
        RestartNetworkOptions,
        SyncClockOptions,
        fix_clock,
        fix_disk,
        fix_files,
        fix_folders,
        fix_network,
    )

    yield DriftFix(
        name="restore-files",
        summary="Copy changed or missing files back from the release",
        fixes={"file-changed", "file-missing", "file-mode"},
        run=fix_files,
    )
    yield DriftFix(
        name="repair-folders",
        summary="Create folders, reset owner and mode",
        fixes={"folder-missing", "folder-owner", "folder-mode"},
        run=fix_folders,
    )
    yield DriftFix(
        name="free-disk",
        summary="Remove old releases and leftovers",
        fixes={"disk-low"},
        run=fix_disk,
    )
    yield DriftFix(
        name="sync-clock",
        summary="Step the clock to the time service",
        fixes={"clock-offset", "clock-unsynced"},
        run=fix_clock,
        config_type=SyncClockOptions,
    )
    yield DriftFix(
        name="restart-network",
        summary="Restart networking (a configured command)",
        fixes={"dns-failure"},
        run=fix_network,
        config_type=RestartNetworkOptions,
    )
