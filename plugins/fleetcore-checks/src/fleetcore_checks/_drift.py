"""The drift checks and fixes of :mod:`fleetcore_checks.drift`; imported when
fleetcore first asks for drift checks or fixes, not by the update cycle."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from attrs import field, frozen

from fleetcore.errors import FixUnavailable, FleetcoreError
from fleetcore.plugin.options import Duration, Size, checked, not_empty
from fleetcore.plugin.release import measure_tree
from fleetcore.plugin.types import CheckContext, Finding

# -- options ------------------------------------------------------------------------


@frozen(kw_only=True)
class FilesOptions:
    report_extra: bool = False
    """Report files that appeared in the release folder (services sometimes
    write there legitimately, so off by default)."""


@frozen(kw_only=True)
class Folder:
    path: str = field(validator=checked(not_empty))
    owner: str | None = None
    group: str | None = None
    mode: str | None = None
    """Octal, e.g. "0750"."""


@frozen(kw_only=True)
class FoldersOptions:
    folders: tuple[Folder, ...] = ()


@frozen(kw_only=True)
class DiskOptions:
    min_free: Size = Size(500 * 1024**2)


@frozen(kw_only=True)
class ClockOptions:
    max_offset: Duration = Duration(1.0)
    command: tuple[str, ...] = ("chronyc", "-c", "tracking")
    """A command whose CSV output's 5th field is the offset in seconds (chrony's)."""


@frozen(kw_only=True)
class DnsOptions:
    names: tuple[str, ...] = ()


@frozen(kw_only=True)
class SyncClockOptions:
    command: tuple[str, ...] = ("chronyc", "makestep")


@frozen(kw_only=True)
class RestartNetworkOptions:
    command: tuple[str, ...] = ()
    """E.g. ["systemctl", "restart", "systemd-networkd"]; empty: not supported here."""


# -- checks ---------------------------------------------------------------------------


def check_release(ctx: CheckContext) -> Iterator[Finding]:
    if ctx.desired_commit and ctx.commit and ctx.desired_commit != ctx.commit:
        yield Finding(
            message="the device does not run the commit it should",
            subject="release",
            code="commit-behind",
            expected=ctx.desired_commit[:12],
            found=ctx.commit[:12],
        )


def _snapshot(ctx: CheckContext) -> dict[str, list[int]] | None:
    if ctx.state_dir is None:
        return None
    path = ctx.state_dir / "releases" / f"{ctx.release_dir.name}.stat.json"
    try:
        return dict(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return None


def check_files(ctx: CheckContext) -> Iterator[Finding]:
    options: FilesOptions = ctx.options or FilesOptions()
    baseline = _snapshot(ctx)
    manifest = ctx.manifest
    if baseline is None and manifest is None:
        yield Finding(
            message="no baseline to compare the release with",
            subject="files",
            code="baseline-missing",
        )
        return
    expected = set(baseline or ()) | {e.path for e in (manifest.entries if manifest else ())}
    # One walk of the tree; contents are read only for a deep check.
    deep = ctx.deep and manifest is not None
    measured = measure_tree(ctx.release_dir, deep=deep)
    present = set(measured.files)
    for path in sorted(expected - present):
        yield Finding(message="missing", subject=path, code="file-missing")
    if options.report_extra:
        for path in sorted(present - expected):
            yield Finding(message="not part of the release", subject=path, code="file-extra")
    if deep:
        assert manifest is not None
        for finding in manifest.compare(measured):
            if finding.code in ("file-changed", "file-mode"):
                yield finding
        return
    for path in sorted(present & set(baseline or ())):
        size, mtime, mode = (baseline or {})[path]
        now = measured.files[path]
        if now.size != size or now.mtime_ns != mtime:
            yield Finding(
                message="changed since activation",
                subject=path,
                code="file-changed",
                expected=f"{size} bytes",
                found=f"{now.size} bytes, modified",
            )
        elif now.mode != mode and now.link is None:
            yield Finding(
                message="mode differs",
                subject=path,
                code="file-mode",
                expected=f"{mode:04o}",
                found=f"{now.mode:04o}",
            )


def check_folders(ctx: CheckContext) -> Iterator[Finding]:
    import grp
    import pwd

    options: FoldersOptions = ctx.options or FoldersOptions()
    for folder in options.folders:
        path = Path(folder.path)
        if not path.is_dir():
            yield Finding(message="folder missing", subject=folder.path, code="folder-missing")
            continue
        st = path.stat()
        if folder.owner is not None:
            owner = _name_of(pwd.getpwuid, st.st_uid)
            if owner != folder.owner:
                yield Finding(
                    message="owner differs",
                    subject=folder.path,
                    code="folder-owner",
                    expected=folder.owner,
                    found=owner,
                )
        if folder.group is not None:
            group = _name_of(grp.getgrgid, st.st_gid)
            if group != folder.group:
                yield Finding(
                    message="group differs",
                    subject=folder.path,
                    code="folder-owner",
                    expected=folder.group,
                    found=group,
                )
        if folder.mode is not None and stat.S_IMODE(st.st_mode) != int(folder.mode, 8):
            yield Finding(
                message="mode differs",
                subject=folder.path,
                code="folder-mode",
                expected=folder.mode,
                found=f"{stat.S_IMODE(st.st_mode):04o}",
            )


def _name_of(lookup: Any, ident: int) -> str:
    try:
        return str(lookup(ident)[0])
    except KeyError:
        return str(ident)


def check_disk(ctx: CheckContext) -> Iterator[Finding]:
    options: DiskOptions = ctx.options or DiskOptions()
    where = ctx.state_dir or ctx.release_dir
    free = shutil.disk_usage(where).free
    if free < options.min_free.bytes:
        yield Finding(
            message="free disk space is low",
            subject=str(where),
            code="disk-low",
            expected=f">= {options.min_free}",
            found=f"{free // 1024**2}M free",
        )


def check_clock(ctx: CheckContext) -> Iterator[Finding]:
    import subprocess

    options: ClockOptions = ctx.options or ClockOptions()
    if shutil.which(options.command[0]) is not None:
        out = subprocess.run(list(options.command), capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            yield Finding(
                message=f"the time service does not answer: {out.stderr.strip()}",
                subject="clock",
                code="clock-unsynced",
            )
            return
        try:
            offset = abs(float(out.stdout.strip().split(",")[4]))
        except (IndexError, ValueError):
            yield Finding(
                message=f"cannot read the time service's offset from {' '.join(options.command)}",
                subject="clock",
                code="clock-unknown",
            )
            return
        if offset > options.max_offset.seconds:
            yield Finding(
                message="the clock is off",
                subject="clock",
                code="clock-offset",
                expected=f"under {options.max_offset}",
                found=f"{offset:.3f}s",
            )
        return
    if shutil.which("timedatectl") is not None:
        out = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip() == "no":
            yield Finding(
                message="the clock is not synchronised",
                subject="clock",
                code="clock-offset",
                expected="synchronised",
                found="not synchronised",
            )
    # No time service to ask: nothing can be said, so nothing is reported.


def check_dns(ctx: CheckContext) -> Iterator[Finding]:
    import socket

    options: DnsOptions = ctx.options or DnsOptions()
    for name in options.names:
        try:
            socket.getaddrinfo(name, None)
        except OSError as exc:
            yield Finding(
                message=f"does not resolve: {exc.strerror or exc}", subject=name, code="dns-failure"
            )


# -- fixes ----------------------------------------------------------------------------


def fix_files(ctx: CheckContext, findings: Sequence[Finding]) -> str:
    """Copy changed and missing files back from a verified fresh copy."""
    kit = ctx.repair
    if kit is None:
        raise FleetcoreError("no repair kit: files can be restored only by the agent")
    pristine: Path = kit.pristine()
    restored = []
    for finding in findings:
        rel = finding.subject
        source = pristine / rel
        target = ctx.release_dir / rel
        if not source.exists() and not source.is_symlink():
            continue  # not part of the release (e.g. a decrypted secret)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.restore")
        if source.is_symlink():
            tmp.unlink(missing_ok=True)
            os.symlink(os.readlink(source), tmp)
        else:
            shutil.copy2(source, tmp)
        os.replace(tmp, target)
        restored.append(rel)
    _refresh_snapshot(ctx, restored)
    return f"restored {len(restored)} file(s): {', '.join(restored[:5])}"


def _refresh_snapshot(ctx: CheckContext, paths: Sequence[str]) -> None:
    if ctx.state_dir is None:
        return
    path = ctx.state_dir / "releases" / f"{ctx.release_dir.name}.stat.json"
    try:
        baseline = dict(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        baseline = {}
    for rel in paths:
        st = (ctx.release_dir / rel).lstat()
        baseline[rel] = [st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode)]
    from fleetcore.plugin import atomic_write

    atomic_write(path, json.dumps(baseline, sort_keys=True).encode())


def fix_folders(ctx: CheckContext, findings: Sequence[Finding]) -> str:
    import grp
    import pwd

    options: FoldersOptions = ctx.check_options.get("folders") or FoldersOptions()
    by_path = {f.path: f for f in options.folders}
    done = []
    for finding in findings:
        folder = by_path.get(finding.subject)
        if folder is None:
            continue
        path = Path(folder.path)
        path.mkdir(parents=True, exist_ok=True)
        uid = pwd.getpwnam(folder.owner).pw_uid if folder.owner else -1
        gid = grp.getgrnam(folder.group).gr_gid if folder.group else -1
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
        if folder.mode is not None:
            path.chmod(int(folder.mode, 8))
        done.append(folder.path)
    return f"repaired {', '.join(sorted(set(done)))}"


def fix_disk(ctx: CheckContext, findings: Sequence[Finding]) -> str:
    kit = ctx.repair
    if kit is None:
        raise FleetcoreError("no repair kit: only the agent can clean up")
    removed = kit.clean()
    return (
        f"removed {len(removed)} old release(s) and leftovers" if removed else "nothing to remove"
    )


def fix_clock(ctx: CheckContext, findings: Sequence[Finding]) -> str:
    return _run_fix_command((ctx.options or SyncClockOptions()).command, "time sync")


def fix_network(ctx: CheckContext, findings: Sequence[Finding]) -> str:
    return _run_fix_command((ctx.options or RestartNetworkOptions()).command, "network restart")


def _run_fix_command(command: Sequence[str], what: str) -> str:
    import subprocess

    if not command:
        raise FixUnavailable(f"{what} is not configured on this device (no command)")
    if shutil.which(command[0]) is None:
        raise FixUnavailable(f"{what} is not possible here: {command[0]} not found")
    out = subprocess.run(list(command), capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise FleetcoreError(f"{' '.join(command)} failed: {out.stderr.strip()[-300:]}")
    return f"ran {' '.join(command)}"
