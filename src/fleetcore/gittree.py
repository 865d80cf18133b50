"""A role's files as git's tree lists them: its manifest, without the archive.

The git fetcher (on devices) and the server's mirror both build a role's
manifest from ``git ls-tree -r -l -z COMMIT -- roles/ROLE/``; this is the one
reading of that output. What each makes of submodules and of repositories in
git's SHA-256 format is its own decision, so both are reported, not refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen

from fleetcore.errors import FetchError
from fleetcore.release import ManifestEntry, normal_mode

LINK_MODE = "120000"
SUBMODULE_MODE = "160000"


def ls_tree_args(commit: str, role: str) -> list[str]:
    """The git command line (after ``git``) whose output :func:`read_role_tree` reads."""
    return ["ls-tree", "-r", "-l", "-z", commit, "--", f"roles/{role}/"]


@frozen
class RoleTree:
    files: tuple[ManifestEntry, ...]
    """Regular files, with sizes, modes and blob ids."""
    links: Mapping[str, str]
    """Symbolic links: path in the role -> blob id of the target text."""
    submodules: tuple[str, ...]
    sha256: bool
    """Object ids in git's SHA-256 format (64 hex digits, not 40)."""

    @property
    def empty(self) -> bool:
        return not self.files and not self.links and not self.submodules

    def entries(self, link_targets: Mapping[str, bytes]) -> tuple[ManifestEntry, ...]:
        """The manifest's entries, sorted by path; ``link_targets`` maps the
        blob ids of :attr:`links` to their contents."""
        links = [
            ManifestEntry(
                path=rel, link=link_targets[oid].decode("utf-8", "surrogateescape"), git_blob=oid
            )
            for rel, oid in self.links.items()
        ]
        return tuple(sorted((*self.files, *links), key=lambda e: e.path))


def read_role_tree(ls_tree_output: bytes, role: str) -> RoleTree:
    folder = f"roles/{role}/"
    files: list[ManifestEntry] = []
    links: dict[str, str] = {}
    submodules: list[str] = []
    sha256 = False
    for record in ls_tree_output.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, oid, size = meta.decode().split()
        path = raw_path.decode("utf-8", "surrogateescape")
        if not path.startswith(folder):
            continue
        rel = path[len(folder) :]
        sha256 = sha256 or len(oid) != 40
        if mode == SUBMODULE_MODE or kind == "commit":
            submodules.append(rel)
        elif mode == LINK_MODE:
            links[rel] = oid
        elif not size.isdigit():
            # git prints "BAD" for a blob it does not have: an interrupted fetch.
            raise FetchError(f"{path} ({oid}) is missing from the git cache")
        else:
            files.append(
                ManifestEntry(
                    path=rel, size=int(size), mode=normal_mode(int(mode, 8)), git_blob=oid
                )
            )
    return RoleTree(tuple(files), links, tuple(submodules), sha256)
