"""Plumbing shared by the fetchers of this package (private: not an API).

Running git with a deadline and redacted errors, checking the names that end
up on git's command line, and measuring a downloaded tar archive.

Kept cheap to import: the fetcher modules import it at load time, and
everything heavy (subprocess, tarfile, hashlib, the release module) is
imported by the functions that need it.
"""

# Imports inside functions are deliberate: the agent loads every fetcher
# at start, and pays only for what the selected one uses.

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from attrs import frozen

from fleetcore.errors import FetchError
from fleetcore.plugin.options import between

if TYPE_CHECKING:
    import tarfile

    from fleetcore.plugin.options import Duration
    from fleetcore.plugin.release import Manifest
    from fleetcore.plugin.types import SourceSettings

GIT_ENV = {
    # Never wait for a password or a host-key answer nobody will type.
    "GIT_TERMINAL_PROMPT": "0",
    "GCM_INTERACTIVE": "never",
    "SSH_ASKPASS_REQUIRE": "never",
    # Messages we parse (and show) are git's English ones.
    "LC_ALL": "C",
}

_REPO_VARS = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_COMMON_DIR",
        "GIT_SHALLOW_FILE",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
    }
)
# Patterns are plain strings, compiled on first use (re caches them) rather
# than at import, which every agent run pays for.
_COMMIT = r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$"
_ROLE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
_BAD_BRANCH = r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//"
_USERINFO = r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s]*@"
_NOISE = (
    "could not read from remote repository",
    "please make sure you have the correct access rights",
    "and the repository exists",
    "archiver died with error",
    "the remote end hung up unexpectedly",
    "early eof",
    "unpack-objects failed",
    "index-pack failed",
    "index-pack failed",
    "fetch-pack: invalid index-pack output",
)


# -- options ----------------------------------------------------------------------


def positive_duration(_inst: Any, attr: Any, value: Duration) -> None:
    if value.seconds <= 0:
        raise ValueError(f"{attr.name} must be longer than 0s, got {value}")


def depth_range(inst: Any, attr: Any, value: int) -> None:
    between(1, 1_000_000)(inst, attr, value)


# -- names that reach git's command line -----------------------------------------


def check_commit(commit: str) -> str:
    """A full commit id, or an error: abbreviations are ambiguous, cannot be
    fetched by id, and anything else could be taken for an option."""
    if not isinstance(commit, str) or not re.match(_COMMIT, commit):
        raise FetchError(f"{commit!r} is not a full commit id (40 or 64 hex digits)")
    return commit


def check_role(role: str) -> str:
    if not isinstance(role, str) or not re.match(_ROLE, role):
        raise FetchError(f"{role!r} is not a role name (letters, digits, '.', '_', '-')")
    return role


def check_branch(branch: str) -> str:
    if (
        not branch
        or branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".", ".lock"))
        or re.search(_BAD_BRANCH, branch)
    ):
        raise FetchError(f"{branch!r} is not a valid branch name")
    return branch


def clean_path(path: str) -> str | None:
    """``path`` if it is a plain relative path inside the repo, else None
    (``read`` treats such a path as missing: it can name no file)."""
    if not path or "\n" in path or "\0" in path or path.startswith(("/", "-")):
        return None
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return path


def redact(text: str) -> str:
    """Hide credentials in URLs: ``https://user:token@host`` -> ``https://***@host``."""
    return re.sub(_USERINFO, r"\1***@", text)


def repo_url(repo: str) -> str:
    """The URL git is given for ``settings.repo``: plain paths made absolute
    (git runs in other folders), everything else as written."""
    if repo.startswith("-"):
        raise FetchError(f"{redact(repo)!r} is not a repository URL or path")
    if "://" in repo:
        return repo
    # scp-like ssh syntax (host:path, user@host:path): a colon before any slash.
    colon, slash = repo.find(":"), repo.find("/")
    if colon > 0 and (slash == -1 or colon < slash):
        return repo
    return os.path.abspath(os.path.expanduser(repo))


def cache_folder(settings: SourceSettings) -> Path:
    """``settings.cache_dir``, created if needed. An unset cache folder would
    put the cache in whatever folder the process happens to run in."""
    if str(settings.cache_dir) in ("", "."):
        raise FetchError("the fetcher needs a cache folder ([source] cache_dir is not set)")
    folder = Path(settings.cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class CorruptArchiveError(FetchError):
    """A downloaded archive cannot be read to the end (truncated, spliced)."""


# -- running git -------------------------------------------------------------------


@frozen
class GitResult:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def git_reason(stderr: str) -> str:
    """The line of git's stderr that says what went wrong.

    Usually the last line, but git often ends with generic lines ("Could not
    read from remote repository", "archiver died") after the real reason.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    full = [line for line in lines if "no space left on device" in line.lower()]
    if full:
        return full[-1]  # the disk, whatever git said after it
    meaningful = [line for line in lines if not any(n in line.lower() for n in _NOISE)]
    if not meaningful:
        return lines[-1] if lines else "no error message"
    line = meaningful[-1]
    # "fatal: unable to connect to host:" / "host[0: ...]: errno=Connection refused"
    index = lines.index(line)
    if index > 0 and lines[index - 1].endswith(":") and lines[index - 1] in meaningful:
        line = f"{lines[index - 1]} {line}"
    return line


def git_error(action: str, url: str, stderr: str, hint: str = "") -> FetchError:
    message = f"{action} {redact(url)} failed: {redact(git_reason(stderr))}"
    return FetchError(f"{message}; {hint}" if hint else message)


def run_git(
    args: Sequence[str],
    *,
    action: str,
    url: str,
    timeout: float,
    cwd: Path | None = None,
    input: bytes | None = None,
    stdout_path: Path | None = None,
) -> GitResult:
    """Run ``git args`` and return what it said; never hangs and never prompts.

    Raises :class:`FetchError` (naming ``action`` and the redacted ``url``)
    only when git cannot run or overruns ``timeout``; a non-zero exit is the
    caller's to interpret. With ``stdout_path``, output goes to that file.
    """
    import signal
    import subprocess

    env = git_env()
    out_file = stdout_path.open("wb") if stdout_path is not None else None
    try:
        try:
            # A session of its own: no controlling terminal for ssh to prompt
            # on, and one process group to kill, remote helpers included.
            proc = subprocess.Popen(
                ["git", *args],
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=out_file if out_file is not None else subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise FetchError("git is not installed (the `git` command was not found)") from None
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException as exc:
            # Killing git alone would leave its helpers (ssh, git-remote-http)
            # holding our pipes open, and communicate() would wait for them.
            kill_group(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
            if isinstance(exc, subprocess.TimeoutExpired):
                raise FetchError(
                    f"{action} {redact(url)} failed: git did not finish within {timeout:g}s"
                ) from None
            raise
    finally:
        if out_file is not None:
            out_file.close()
    return GitResult(proc.returncode, out or b"", (err or b"").decode("utf-8", "replace"))


def git_env() -> dict[str, str]:
    """The environment git runs in: ours, without the variables a git hook or
    a shell may have set (they would point git at another repository than
    the one on the command line), never prompting, in English."""
    env = {k: v for k, v in os.environ.items() if k not in _REPO_VARS}
    env.update(GIT_ENV)
    return env


def kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def ls_remote_head(url: str, branch: str, *, timeout: float) -> str:
    """The commit at the head of ``branch`` on the remote, without fetching
    anything but the ref (protocol v2 asks the server for that ref only)."""
    check_branch(branch)
    ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
    result = run_git(
        ["ls-remote", "--", url, ref], action="git ls-remote of", url=url, timeout=timeout
    )
    if not result.ok:
        raise git_error("git ls-remote of", url, result.stderr)
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        oid, _, name = line.partition("\t")
        if name == ref and re.match(_COMMIT, oid):
            return oid
    raise FetchError(f"branch {branch!r} not found in {redact(url)}")


# -- measuring tar archives ----------------------------------------------------------


def _member_name(name: str) -> str | None:
    """A member's name as unpack will see it, or None for a name unpack
    refuses anyway (it is then left out here, and unpack says why)."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or "\\" in name or "\0" in name:
        return None
    return "/".join(parts)


def _members(archive: Path | IO[bytes]) -> Iterator[tuple[str, tarfile.TarInfo, tarfile.TarFile]]:
    import tarfile

    source = {"name": archive} if isinstance(archive, Path) else {"fileobj": archive}
    with tarfile.open(mode="r|*", **source) as tar:
        for member in tar:
            if member.type in (tarfile.XHDTYPE, tarfile.XGLTYPE):
                continue
            name = _member_name(member.name)
            if name is not None:
                yield name, member, tar


def _archive_errors() -> tuple[type[BaseException], ...]:
    import gzip
    import tarfile
    import zlib

    return (tarfile.TarError, EOFError, OSError, zlib.error, gzip.BadGzipFile)


def _single_top(tops: set[str], nested: bool) -> str | None:
    return next(iter(tops)) if len(tops) == 1 and nested else None


def scan_role(
    archive: Path, *, commit: str, role: str, source: str, top_folder: bool, measure: bool
) -> tuple[str, Manifest | None]:
    """Find ``roles/<role>`` in a downloaded archive in one streaming pass.

    Returns the prefix of the role inside the archive and, with ``measure``,
    the manifest of what is there (sha256, size and normalized mode of each
    file, target of each link). With ``top_folder``, a single top-level folder
    (forges wrap archives in ``<repo>-<commit>/``) is detected and included in
    the prefix. Raises :class:`FetchError` when the archive is unreadable or
    has no such role.
    """
    import hashlib

    from fleetcore.plugin.release import CHUNK, Manifest, ManifestEntry, normal_mode

    found: dict[str, dict[str, ManifestEntry]] = {}
    tops: set[str] = set()
    nested = False
    plain = f"roles/{role}"
    try:
        for name, member, tar in _members(archive):
            parts = name.split("/")
            tops.add(parts[0])
            nested = nested or len(parts) > 1
            if parts[:2] == ["roles", role] and len(parts) > 2:
                prefix, rel = plain, "/".join(parts[2:])
            elif top_folder and parts[1:3] == ["roles", role] and len(parts) > 3:
                prefix, rel = f"{parts[0]}/{plain}", "/".join(parts[3:])
            else:
                continue
            entries = found.setdefault(prefix, {})
            if not measure or member.isdir():
                entries.setdefault(rel, ManifestEntry(path=rel))
            elif member.issym():
                target = member.linkname.encode("utf-8", "surrogateescape")
                entries[rel] = ManifestEntry(
                    path=rel, link=member.linkname, sha256=hashlib.sha256(target).hexdigest()
                )
            elif member.isfile():
                digest, size = hashlib.sha256(), 0
                data = tar.extractfile(member)
                assert data is not None
                while chunk := data.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                if size != member.size:
                    raise EOFError(f"member {member.name!r} is truncated")
                entries[rel] = ManifestEntry(
                    path=rel, size=size, mode=normal_mode(member.mode), sha256=digest.hexdigest()
                )
            # Hard links, devices and the like are left out: unpack refuses them.
    except _archive_errors() as exc:
        raise CorruptArchiveError(f"{source}: the archive is corrupt or truncated: {exc}") from None
    top = _single_top(tops, nested) if top_folder else None
    prefix = f"{top}/{plain}" if top is not None and f"{top}/{plain}" in found else plain
    if prefix not in found:
        raise FetchError(f"role {role!r} not found at commit {commit} ({source})")
    if not measure:
        return prefix, None
    # Folders were only placeholders for the role's existence.
    measured = sorted(
        (e for e in found[prefix].values() if e.sha256 is not None), key=lambda e: e.path
    )
    return prefix, Manifest(commit=commit, role=role, entries=tuple(measured))


def read_files(
    archive: Path | IO[bytes], paths: Sequence[str], *, source: str, top_folder: bool
) -> dict[str, bytes]:
    """The regular files at ``paths`` in a tar archive (with ``top_folder``,
    under its single top-level folder if it has one); missing ones left out."""
    wanted = {p for p in map(clean_path, paths) if p is not None}
    plain: dict[str, bytes] = {}
    wrapped: dict[str, dict[str, bytes]] = {}
    tops: set[str] = set()
    nested = False
    try:
        for name, member, tar in _members(archive):
            parts = name.split("/")
            tops.add(parts[0])
            nested = nested or len(parts) > 1
            if not member.isfile():
                continue
            if name in wanted:
                plain[name] = _read_member(tar, member)
            rest = "/".join(parts[1:])
            if top_folder and rest in wanted:
                wrapped.setdefault(parts[0], {})[rest] = _read_member(tar, member)
    except _archive_errors() as exc:
        raise CorruptArchiveError(f"{source}: the archive is corrupt or truncated: {exc}") from None
    top = _single_top(tops, nested) if top_folder else None
    # A plain archive whose only top-level folder is roles/ finds nothing
    # "wrapped": the requested paths themselves start with that folder.
    return (wrapped.get(top) if top is not None else None) or plain


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    data = tar.extractfile(member)
    assert data is not None
    content = data.read()
    if len(content) != member.size:
        raise EOFError(f"member {member.name!r} is truncated")
    return content
