"""What a plugin may use of fleetcore's release model: manifests, measuring
files, and reading a role's tree from git.

A fetcher returns a :class:`Manifest` with each archive (see
:mod:`fleetcore.fetch.interface`); a fetcher that derives it from git reads
``git ls-tree`` output with :func:`read_role_tree`. Drift checks measure a
release folder as it is on disk with :func:`measure_tree` and compare it with
:meth:`Manifest.compare`.
"""

from fleetcore.gittree import LINK_MODE, SUBMODULE_MODE, RoleTree, ls_tree_args, read_role_tree
from fleetcore.release import (
    CHUNK,
    Manifest,
    ManifestEntry,
    Measured,
    Unpacked,
    git_blob_id,
    measure_tree,
    normal_mode,
)

__all__ = [
    "CHUNK",
    "LINK_MODE",
    "SUBMODULE_MODE",
    "Manifest",
    "ManifestEntry",
    "Measured",
    "RoleTree",
    "Unpacked",
    "git_blob_id",
    "ls_tree_args",
    "measure_tree",
    "normal_mode",
    "read_role_tree",
]
