"""The server's mirror of the fleet repo: branch heads, role archives, manifests.

A bare repository in the data folder, fetched periodically and on the git
hook. Archives are built once per (commit, role) with ``git archive`` and
kept as files, so a resumed download reads the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
from pathlib import Path

from fleetcore.errors import FetchError
from fleetcore.gittree import ls_tree_args, read_role_tree
from fleetcore.release import Manifest

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
ROLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}


def _redact(url: str) -> str:
    return re.sub(r"//[^/@]+@", "//***@", url)


class Mirror:
    def __init__(self, folder: Path, url: str, timeout: float = 120.0) -> None:
        self.folder = folder
        self.url = url
        self.timeout = timeout
        self.archives = folder.parent / "archives"
        # One fetch at a time; archive builds of the same file likewise.
        self._fetch_lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._heads: dict[str, str] | None = None
        if not (folder / "HEAD").exists():
            folder.mkdir(parents=True, exist_ok=True)
            self._git("init", "--bare", "--quiet", str(folder), git_dir=False)
        attributes = folder / "info" / "attributes"
        attributes.parent.mkdir(parents=True, exist_ok=True)
        # Archives are the tree byte for byte, whatever .gitattributes says.
        attributes.write_bytes(b"* -export-ignore -export-subst\n")

    def _git(
        self, *args: str, git_dir: bool = True, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = ["git", *(["--git-dir", str(self.folder)] if git_dir else []), *args]
        try:
            result = subprocess.run(
                cmd, capture_output=True, timeout=self.timeout, env=_ENV, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            raise FetchError(f"git {args[0]} timed out after {self.timeout:.0f}s") from None
        if check and result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().splitlines()
            raise FetchError(f"git {args[0]} failed: {_redact(message[-1] if message else '?')}")
        return result

    def fetch(self) -> dict[str, str]:
        """Fetch every branch from the fleet repo; returns the branch heads."""
        with self._fetch_lock:
            self._git(
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "--",
                self.url,
                "+refs/heads/*:refs/heads/*",
            )
            self._heads = None
        return self.branches()

    def branches(self) -> dict[str, str]:
        """Branch heads as of the last fetch (cached: desired states ask often)."""
        heads = self._heads
        if heads is None:
            heads = self._heads = self._read_heads()
        return heads

    def _read_heads(self) -> dict[str, str]:
        out = self._git("for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
        heads = {}
        for line in out.stdout.decode().splitlines():
            name, _, commit = line.partition(" ")
            heads[name] = commit
        return heads

    def head(self, branch: str) -> str | None:
        return self.branches().get(branch)

    def resolve(self, ref: str) -> str | None:
        """The full commit id of ``ref`` (a commit id, a prefix or a branch), if known."""
        if not ref or ref.startswith("-") or not re.fullmatch(r"[A-Za-z0-9._/-]+", ref):
            return None
        result = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if result.returncode != 0:
            return None
        return result.stdout.decode().strip()

    def resolve_or_fetch(self, ref: str) -> str | None:
        """Resolve ``ref``, fetching first when the mirror does not know it yet."""
        found = self.resolve(ref)
        if found is None or not COMMIT_RE.match(ref):
            # A branch name may have moved; a new commit may have been pushed.
            try:
                self.fetch()
            except FetchError:
                if found is None:
                    raise
            found = self.resolve(ref)
        return found

    def relation(self, old: str, new: str) -> str:
        """How commit ``new`` relates to ``old`` in the mirror's history:
        ``same``, ``descendant``, ``ancestor`` or ``unrelated``."""
        if old == new:
            return "same"

        def contains(older: str, newer: str) -> bool:
            return (
                self._git("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0
            )

        if contains(old, new):
            return "descendant"
        return "ancestor" if contains(new, old) else "unrelated"

    def proof(self, commit: str, role: str) -> dict[str, str]:
        """The raw commit object, root tree and ``roles`` tree, base64: a
        device without git checks the commit's signature and that the role's
        files are that commit's with them."""
        import base64

        objects = {
            "commit_object": self._git("cat-file", "commit", commit).stdout,
            "root_tree": self._git("cat-file", "tree", f"{commit}^{{tree}}").stdout,
            "roles_tree": self._git("cat-file", "tree", f"{commit}:roles").stdout,
        }
        return {k: base64.b64encode(v).decode() for k, v in objects.items()}

    def has_role(self, commit: str, role: str) -> bool:
        result = self._git("cat-file", "-e", f"{commit}:roles/{role}", check=False)
        return result.returncode == 0

    def roles(self, commit: str) -> list[str]:
        """The role folders (``roles/<name>``) at ``commit``."""
        out = self._git("ls-tree", "-d", "--name-only", commit, "--", "roles/").stdout
        return sorted(line.removeprefix("roles/") for line in out.decode().splitlines() if line)

    def archive(self, commit: str, role: str) -> Path:
        """The tar of ``roles/<role>`` at ``commit``, built once and cached."""
        target = self.archives / commit / f"{role}.tar"
        if target.exists():
            return target
        with self._build_lock:
            if target.exists():
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".tar.part")
            self._git("archive", "--format=tar", "-o", str(partial), commit, "--", f"roles/{role}")
            partial.replace(target)
        return target

    @staticmethod
    def etag(kind: str, commit: str, role: str) -> str:
        # (commit, role) names the content: the same on every replica, forever.
        return '"' + hashlib.sha256(f"{kind}/{commit}/{role}".encode()).hexdigest()[:32] + '"'

    def manifest(self, commit: str, role: str) -> Manifest:
        """The role's manifest from git's tree (blob ids, sizes, modes, links),
        as the git fetcher builds it, independent of the archive."""
        # Submodules are left out (the archive has only an empty folder for them).
        tree = read_role_tree(self._git(*ls_tree_args(commit, role)).stdout, role)
        targets = {
            oid: self._git("cat-file", "blob", oid).stdout for oid in set(tree.links.values())
        }
        return Manifest(commit=commit, role=role, entries=tree.entries(targets))
