"""The ``git-archive`` fetcher: role archives made by the git server itself.

**For operators.** For devices with too little storage for a git cache: the
device keeps no history at all. Each release is one
``git archive --remote=<repo> --format=tar <commit> roles/<role>``, and small
files are read the same way. The server must offer ``git upload-archive``:
``git daemon --enable=upload-archive`` (``git://``), ssh, or a local path.
Smart HTTP does not carry it (GitHub, GitLab and most forges do not offer it
at all): use the ``git`` or ``http-tarball`` fetcher there::

    [source]
    repo = "git://git.example.com/fleet"
    fetcher = "git-archive"
    timeout = "2m"

The server must also allow archives of a bare commit id, which
``git upload-archive`` refuses by default ("no such ref")::

    git -C /srv/git/fleet.git config uploadArchive.allowUnreachable true

**What verification means here.** A remote archive comes with nothing to
check it against, so the manifest is computed from the archive itself (sha256,
size and normalized mode of each file, the target of each link) in a
streaming pass right after the download. That guards the copy between download
and activation (disk errors, a process tampering with the staging folder), and
the unpacker still refuses anything unsafe. It does not prove the archive is
what the repository holds: authenticity rests on the transport (ssh, or a
network you trust for ``git://``). The ``git`` fetcher verifies against git's
own tree and is the choice when that matters.
"""

# Imports inside functions are deliberate: the agent loads every fetcher
# at start, and pays only for what the selected one uses.

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import field, frozen

from fleetcore.errors import FetchError
from fleetcore.plugin import hookimpl
from fleetcore.plugin.options import Duration, checked
from fleetcore.plugin.types import Fetcher, SourceSettings
from fleetcore_git._common import (
    GitResult,
    check_commit,
    check_role,
    clean_path,
    git_error,
    ls_remote_head,
    positive_duration,
    read_files,
    redact,
    repo_url,
    run_git,
    scan_role,
)

if TYPE_CHECKING:
    from fleetcore.fetch.interface import Fetched

_MISSING_PATH = r"pathspec '(.*)' did not match any files"
ALLOW_UNREACHABLE_HINT = (
    "a remote archive of a commit id needs `git config uploadArchive.allowUnreachable true` "
    "in the repository on the server (or the commit is not there)"
)
NO_PROTOCOL_HINT = (
    "this transport does not carry `git archive --remote` (smart HTTP never does); "
    "use git://, ssh or a local path, or the git or http-tarball fetcher"
)


@frozen(kw_only=True)
class RemoteArchiveOptions:
    """Options of the ``git-archive`` fetcher (keys of ``[source]``)."""

    timeout: Duration = field(default=Duration(120), validator=checked(positive_duration))
    """Longest a single git command (one download) may run before it is killed."""


class RemoteArchiveSource:
    """A :class:`fleetcore.fetch.interface.Source` using ``git archive --remote``."""

    def __init__(
        self, settings: SourceSettings, options: RemoteArchiveOptions | None = None
    ) -> None:
        self.settings = settings
        self.options = options or RemoteArchiveOptions()
        self.url = repo_url(settings.repo)

    def head(self, branch: str) -> str:
        return ls_remote_head(self.url, branch, timeout=self.options.timeout.seconds)

    def read(self, commit: str, paths: Sequence[str]) -> Mapping[str, bytes]:
        import io

        check_commit(commit)
        wanted = list(dict.fromkeys(p for p in paths if clean_path(p)))
        # One archive for all paths; upload-archive fails on the first path
        # that matches nothing and names it, so drop that one and ask again.
        while wanted:
            result = self._archive(commit, wanted)
            if result.ok:
                return read_files(
                    io.BytesIO(result.stdout), wanted, source=redact(self.url), top_folder=False
                )
            match = re.search(_MISSING_PATH, result.stderr)
            if match is None or match.group(1) not in wanted:
                raise self._error(commit, result)
            wanted.remove(match.group(1))
        return {}

    def fetch(self, commit: str, role: str, workdir: Path) -> Fetched:
        from fleetcore.fetch.interface import Fetched

        check_commit(commit)
        check_role(role)
        prefix = f"roles/{role}"
        archive = workdir / "role.tar"
        result = self._archive(commit, [prefix], stdout_path=archive)
        if not result.ok:
            if re.search(_MISSING_PATH, result.stderr):
                raise FetchError(
                    f"role {role!r} not found at commit {commit} in {redact(self.url)} "
                    f"(no folder {prefix})"
                )
            raise self._error(commit, result)
        found, manifest = scan_role(
            archive,
            commit=commit,
            role=role,
            source=redact(self.url),
            top_folder=False,
            measure=True,
        )
        assert manifest is not None
        return Fetched(archive=archive, prefix=found, manifest=manifest)

    def _archive(
        self, commit: str, paths: Sequence[str], stdout_path: Path | None = None
    ) -> GitResult:
        return run_git(
            ["archive", f"--remote={self.url}", "--format=tar", commit, "--", *paths],
            action="git archive --remote of",
            url=self.url,
            timeout=self.options.timeout.seconds,
            stdout_path=stdout_path,
        )

    def _error(self, commit: str, result: GitResult) -> FetchError:
        hint = ""
        if "no such ref" in result.stderr:
            hint = ALLOW_UNREACHABLE_HINT
        elif "operation not supported by protocol" in result.stderr:
            hint = NO_PROTOCOL_HINT
        elif "not a tree object" in result.stderr:
            hint = f"commit {commit} is not in the repository"
        return git_error("git archive --remote of", self.url, result.stderr, hint)


@hookimpl
def fleetcore_register_fetchers() -> Sequence[Fetcher]:
    return [
        Fetcher(
            name="git-archive",
            summary="`git archive --remote` per release; no local history (tiny devices)",
            config_type=RemoteArchiveOptions,
            factory=RemoteArchiveSource,
        )
    ]
