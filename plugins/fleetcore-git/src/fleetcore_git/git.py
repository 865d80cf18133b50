"""The ``git`` fetcher: releases straight from the fleet repo, through git.

**For operators.** This is the default fetcher. ``[source] repo`` can be
anything ``git fetch`` understands: a plain path, ``file://``, ``git://``
(``git daemon``), ``http(s)://`` (smart HTTP) or ssh (``ssh://host/path`` or
``user@host:path``)::

    [source]
    repo = "https://git.example.com/org/fleet.git"
    branch = "main"
    fetcher = "git"      # the default
    depth = 1            # history fetched with each commit
    timeout = "2m"       # any git command running longer is killed

The device keeps a bare git repository in the agent's cache folder. A branch
head is asked for with ``git ls-remote`` (no objects move); a commit is fetched
shallowly (``--depth``) only when the cache does not have it yet, and the
commits fetched before tell the server what the device already has, so a
release that changes one file downloads little more than that file. The role's
archive is then made locally with ``git archive``. When someone watches a
terminal (``agent once``), the fetch shows the bytes git has received so far;
in a service or a pipe git runs quietly, as always.

git never prompts: ``GIT_TERMINAL_PROMPT=0`` and no terminal, so a repository
that needs credentials fails at once. Give credentials the usual git ways (a
credential helper, an ssh key, or ``https://user:token@host/...`` in the URL,
which error messages show as ``https://***@host/...``).

**Why this fetcher is the safe default.** The manifest the release is verified
against comes from git's own tree (``git ls-tree``), not from the archive:
each file's git blob id, size and mode, and each link's target. git has
checked every object id against its content when the objects arrived, so the
unpacker, which recomputes each file's blob id as it writes it, proves the
unpacked release is exactly the commit's tree.

Roles must not contain submodules (they are refused with an error), and the
cache ignores ``export-ignore``/``export-subst`` attributes, which would make
an archive differ from its tree. Repositories in git's SHA-256 object format
are not supported yet: the unpacker checks SHA-1 blob ids.
"""

# Imports inside functions are deliberate: the agent loads every fetcher
# at start, and pays only for what the selected one uses.

from __future__ import annotations

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
    cache_folder,
    check_branch,
    check_commit,
    check_role,
    clean_path,
    depth_range,
    git_error,
    ls_remote_head,
    positive_duration,
    redact,
    repo_url,
    run_git,
)

if TYPE_CHECKING:
    from fleetcore.fetch.interface import Fetched
    from fleetcore.plugin import CommitProof
    from fleetcore.plugin.release import ManifestEntry

REF_PREFIX = "refs/fleetcore/commits/"
"""Every fetched commit gets a ref: ``git gc`` prunes unreferenced objects,
and only referenced commits are offered to the server as what we have."""
BRANCH_REF = "refs/fleetcore/branch"
KEEP_REFS = 5
"""Refs kept (newest commits first); older commits' objects may be pruned."""

_NO_EXPORT_ATTRIBUTES = b"* -export-ignore -export-subst\n"


@frozen(kw_only=True)
class GitOptions:
    """Options of the ``git`` fetcher (keys of ``[source]``)."""

    depth: int = field(default=1, validator=checked(depth_range))
    """Commits of history fetched with a release (1: just the commit)."""
    timeout: Duration = field(default=Duration(120), validator=checked(positive_duration))
    """Longest a single git command may run before it is killed."""


class GitSource:
    """A :class:`fleetcore.fetch.interface.Source` backed by a bare git cache."""

    def __init__(self, settings: SourceSettings, options: GitOptions | None = None) -> None:
        self.settings = settings
        self.options = options or GitOptions()
        self.url = repo_url(settings.repo)
        self._cache: Path | None = None
        # Commits known to be in the cache: each costs a git process to ask again.
        self._present: set[str] = set()

    # -- the Source interface ---------------------------------------------------------

    def head(self, branch: str) -> str:
        return ls_remote_head(self.url, branch, timeout=self.options.timeout.seconds)

    def read(self, commit: str, paths: Sequence[str]) -> Mapping[str, bytes]:
        self._ensure(commit)
        wanted = list(dict.fromkeys(p for p in paths if clean_path(p)))
        objects = self._cat_objects([f"{commit}:{p}" for p in wanted])
        return {
            path: data for path in wanted if (data := objects.get(f"{commit}:{path}")) is not None
        }

    def fetch(self, commit: str, role: str, workdir: Path) -> Fetched:
        from fleetcore.fetch.interface import Fetched
        from fleetcore.plugin.release import Manifest

        check_role(role)
        self._ensure(commit)
        prefix = f"roles/{role}"
        entries = self._tree_manifest(commit, role)
        archive = workdir / "role.tar"
        result = self._git(
            "archive",
            "--format=tar",
            "-o",
            str(archive),
            commit,
            "--",
            prefix,
            action="git archive of the cache of",
        )
        if not result.ok:
            raise git_error("git archive of the cache of", self.url, result.stderr)
        manifest = Manifest(commit=commit, role=role, entries=entries)
        return Fetched(archive=archive, prefix=prefix, manifest=manifest)

    def relation(self, old: str, new: str) -> str:
        """How ``new`` relates to ``old``: ``descendant`` (its history holds
        ``old``), ``ancestor``, ``unrelated`` or ``same``. The cache is shallow:
        history is deepened until git can tell (rollback protection)."""
        if old == new:
            return "same"
        self._ensure(old)
        self._ensure(new)
        # The usual update is to a child of the running commit: the commit
        # object's parent lines say so (a shallow cache hides its parents
        # from rev-list, not from the object) without deepening the cache.
        raw = self._git("cat-file", "commit", new, action="git cat-file in")
        head = raw.stdout.partition(b"\n\n")[0].split(b"\n") if raw.ok else []
        if f"parent {old}".encode() in head:
            return "descendant"
        for deepen in ("--deepen=100", "--unshallow", None):
            if self._is_ancestor(old, new):
                return "descendant"
            if self._is_ancestor(new, old):
                return "ancestor"
            if deepen is None or not (self._cache_repo() / "shallow").exists():
                return "unrelated"
            result = self._fetch(
                deepen,
                f"{old}:{REF_PREFIX}{old}",
                f"{new}:{REF_PREFIX}{new}",
                action="git fetch (history) from",
                label=f"history {new[:12]}",
            )
            if not result.ok:
                raise git_error("git fetch of history from", self.url, result.stderr)
        return "unrelated"

    def proof(self, commit: str, role: str) -> CommitProof:
        """The commit object (with its signature), its root tree and the
        ``roles`` tree, raw: what a signature check verifies."""
        from fleetcore.plugin import CommitProof

        check_role(role)
        self._ensure(commit)
        objects = {}
        for name, spec in (
            ("commit", commit),
            ("tree", f"{commit}^{{tree}}"),
            ("roles", f"{commit}:roles"),
        ):
            kind = "commit" if name == "commit" else "tree"
            result = self._git("cat-file", kind, spec, action="git cat-file in")
            if not result.ok:
                raise git_error(f"reading {spec} in the cache of", self.url, result.stderr)
            objects[name] = result.stdout
        return CommitProof(
            commit_object=objects["commit"], root_tree=objects["tree"], roles_tree=objects["roles"]
        )

    def _is_ancestor(self, older: str, newer: str) -> bool:
        result = self._git("merge-base", "--is-ancestor", older, newer, action="git merge-base in")
        return result.ok

    # -- making room (optional Source methods the agent uses when they exist) --------

    def download_size(self, commit: str, role: str) -> int | None:
        """The role's size when the cache already has ``commit`` (the archive
        is made locally); None when it must be fetched first (git does not
        say how big a fetch will be before it runs)."""
        check_role(role)
        if not self._has_ref(commit):
            return None
        return sum(entry.size for entry in self._tree_manifest(commit, role))

    def free_cache(self, keep: Sequence[str]) -> None:
        """Drop every cached commit but ``keep`` and the objects only they
        held (a fetch that filled the disk, releases long gone)."""
        cache = self._cache_repo()
        listed = self._git("for-each-ref", "--format=%(refname)", "refs/fleetcore/",
                           action="git for-each-ref in")  # fmt: skip
        doomed = [
            ref
            for ref in (listed.stdout.decode().split() if listed.ok else [])
            if not any(ref == f"{REF_PREFIX}{commit}" for commit in keep)
        ]
        if doomed:
            commands = "".join(f"delete {ref}\n" for ref in doomed).encode()
            self._git("update-ref", "--stdin", input=commands, action="git update-ref in")
        self._present = {c for c in self._present if c in keep}
        self._git("reflog", "expire", "--expire=now", "--all", action="git reflog in")
        # Repack what is still referenced, then drop the rest, half-written
        # packs of an interrupted fetch included.
        self._git("repack", "-a", "-d", "-q", action="git repack in")
        self._git("prune", "--expire=now", action="git prune in")
        for leftover in (cache / "objects" / "pack").glob("tmp_*"):
            leftover.unlink(missing_ok=True)

    # -- the cache ----------------------------------------------------------------------

    def _git(self, *args: str, action: str, input: bytes | None = None) -> GitResult:
        cache = self._cache_repo()
        # --git-dir, not the working folder: never some other repository.
        return run_git(
            ["--git-dir", str(cache), *args],
            action=action,
            url=self.url,
            timeout=self.options.timeout.seconds,
            input=input,
        )

    def _fetch(self, option: str, *refspecs: str, action: str, label: str) -> GitResult:
        """``git fetch`` from the remote; with a meter when someone watches
        (``settings.progress``): git reports its progress only when asked."""
        args = ["--no-tags", option, "--", self.url, *refspecs]
        progress = self.settings.progress
        if progress is None:
            return self._git("fetch", "--quiet", *args, action=action)
        from fleetcore_git._progress import run_git_with_progress

        # Not --quiet: it would silence git's "Receiving objects" too; the
        # lines it would have kept back are left out of the error text. A
        # small fetch is unpacked by a git command that reports only to a
        # terminal: unpackLimit=1 keeps every fetch a pack, which reports.
        command = ["-c", "fetch.unpackLimit=1", "--git-dir", str(self._cache_repo())]
        return run_git_with_progress(
            [*command, "fetch", "--progress", *args],
            action=action,
            url=self.url,
            timeout=self.options.timeout.seconds,
            meter=lambda: progress(label, None),
        )

    def _cache_repo(self) -> Path:
        if self._cache is not None:
            return self._cache
        folder = cache_folder(self.settings)
        if not (folder / "HEAD").exists():
            result = run_git(
                ["init", "--bare", "--quiet", str(folder)],
                action="git init of",
                url=str(folder),
                timeout=self.options.timeout.seconds,
            )
            if not result.ok:
                raise git_error("creating the git cache", str(folder), result.stderr)
        # Highest-precedence attributes: archives are the tree, byte for byte,
        # whatever .gitattributes a role carries.
        attributes = folder / "info" / "attributes"
        if not attributes.exists() or attributes.read_bytes() != _NO_EXPORT_ATTRIBUTES:
            attributes.parent.mkdir(parents=True, exist_ok=True)
            attributes.write_bytes(_NO_EXPORT_ATTRIBUTES)
        self._cache = folder
        return folder

    def _has(self, commit: str) -> bool:
        return self._git("cat-file", "-e", f"{commit}^{{commit}}", action="looking up in").ok

    def _complete(self, commit: str) -> bool:
        """The commit and every object of its tree are here. An interrupted
        fetch can leave the commit without all its blobs (loose objects are
        written as they arrive), so the commit alone proves nothing."""
        listed = self._git(
            "rev-list", "--objects", "--missing=error", "-n", "1", commit, "--",
            action="checking objects in",
        )  # fmt: skip
        return listed.ok

    def _ensure(self, commit: str) -> None:
        """Make sure the cache has ``commit``; fetch it (shallowly) if not."""
        check_commit(commit)
        if commit in self._present or self._has_ref(commit):
            self._present.add(commit)
            return
        result = self._fetch(
            f"--depth={self.options.depth}",
            f"{commit}:{REF_PREFIX}{commit}",
            action="git fetch from",
            label=f"download {commit[:12]}",
        )
        if not result.ok and "No space left" in result.stderr:
            # A fetch that filled the disk leaves some objects (the commit
            # among them) but not all: never take that as the commit being here.
            raise git_error(f"git fetch of commit {commit} from", self.url, result.stderr)
        if not result.ok and self._complete(commit):
            # Unreachable remote, but an earlier fetch brought it (e.g. via the branch).
            self._present.add(commit)
            return
        if not result.ok:
            self._fetch_via_branch(commit, result)
        self._present.add(commit)
        self._prune_refs()

    def _fetch_via_branch(self, commit: str, failed: GitResult) -> None:
        """Old servers (protocol v0 without ``uploadpack.allowReachableSHA1InWant``)
        serve only advertised refs: fetch the branch and look for the commit."""
        branch = check_branch(self.settings.branch)
        result = self._fetch(
            f"--depth={self.options.depth}",
            f"+refs/heads/{branch}:{BRANCH_REF}",
            action="git fetch from",
            label=f"download {commit[:12]}",
        )
        if not (result.ok and self._has(commit)):
            raise git_error(f"git fetch of commit {commit} from", self.url, failed.stderr)
        self._git("update-ref", f"{REF_PREFIX}{commit}", commit, action="git update-ref in")

    def _has_ref(self, commit: str) -> bool:
        """Our own ref for ``commit`` exists: the commit and its tree are here."""
        cache = self._cache_repo()
        if (cache / REF_PREFIX / commit).is_file():
            return True
        packed = cache / "packed-refs"
        return packed.exists() and f" {REF_PREFIX}{commit}\n".encode() in packed.read_bytes()

    def _ref_count(self) -> int:
        """Refs kept for fetched commits, counted from the files git keeps
        them in: cheaper than a git process on every fetch."""
        cache = self._cache_repo()
        loose = cache / REF_PREFIX
        count = sum(1 for _ in loose.iterdir()) if loose.is_dir() else 0
        packed = cache / "packed-refs"
        if packed.exists():
            count += packed.read_bytes().count(f" {REF_PREFIX}".encode())
        return count

    def _prune_refs(self) -> None:
        # Prune in batches: listing refs is a git process of its own.
        if self._ref_count() <= 2 * KEEP_REFS:
            return
        result = self._git(
            "for-each-ref",
            "--sort=-committerdate",
            "--format=%(refname)",
            REF_PREFIX,
            action="git for-each-ref in",
        )
        old = result.stdout.decode().split()[KEEP_REFS:] if result.ok else []
        if old:
            commands = "".join(f"delete {ref}\n" for ref in old).encode()
            self._git("update-ref", "--stdin", input=commands, action="git update-ref in")

    def _cat_objects(self, names: Sequence[str]) -> dict[str, bytes]:
        """Contents of the blobs ``names`` (``<commit>:<path>`` or object ids),
        in one ``git cat-file --batch``; missing names and non-blobs left out."""
        if not names:
            return {}
        request = "".join(f"{name}\n" for name in names).encode("utf-8", "surrogateescape")
        result = self._git("cat-file", "--batch", input=request, action="git cat-file in")
        if not result.ok:
            raise git_error("git cat-file in the cache of", self.url, result.stderr)
        out, pos, found = result.stdout, 0, {}
        for name in names:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            # "<oid> <type> <size>" then the content, or "<name> missing".
            if len(header) != 3 or not header[2].isdigit():
                continue
            size = int(header[2])
            if header[1] == b"blob":
                found[name] = out[pos : pos + size]
            pos += size + 1
        return found

    def _tree_manifest(self, commit: str, role: str) -> tuple[ManifestEntry, ...]:
        """The manifest of ``roles/<role>`` from git's tree: blob ids, sizes,
        modes and link targets, independent of the archive."""
        from fleetcore.plugin.release import ls_tree_args, read_role_tree

        result = self._git(*ls_tree_args(commit, role), action="git ls-tree in")
        if not result.ok:
            raise git_error("git ls-tree in the cache of", self.url, result.stderr)
        tree = read_role_tree(result.stdout, role)
        if tree.sha256:
            raise FetchError(
                f"{redact(self.url)} uses git's SHA-256 object format, which the git "
                "fetcher does not support yet; use the git-archive or http-tarball fetcher"
            )
        if tree.submodules:
            raise FetchError(
                f"role {role!r} at commit {commit} contains a submodule ({tree.submodules[0]}): "
                "submodules are not supported in roles"
            )
        if tree.empty:
            raise FetchError(
                f"role {role!r} not found at commit {commit} in {redact(self.url)} "
                f"(no folder roles/{role})"
            )
        return tree.entries(self._cat_objects(list(dict.fromkeys(tree.links.values()))))


@hookimpl
def fleetcore_register_fetchers() -> Sequence[Fetcher]:
    return [
        Fetcher(
            name="git",
            summary="Shallow fetches into a local git cache; manifest from git's tree",
            config_type=GitOptions,
            factory=GitSource,
        )
    ]
