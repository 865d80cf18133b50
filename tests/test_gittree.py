"""One reading of a role's git tree, shared by the git fetcher and the server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fleetcore.gittree import ls_tree_args, read_role_tree
from fleetcore.server.mirror import Mirror
from fleetcore.testing.gitrepo import FleetRepo


def _repo(tmp_path: Path) -> tuple[FleetRepo, str]:
    repo = FleetRepo.create(tmp_path / "fleet")
    repo.write({"roles/web/conf/site.conf": "listen 80\n", "roles/webby/x": "not web\n"})
    repo.write({"roles/web/run.sh": "#!/bin/sh\n"})
    os.chmod(repo.path / "roles/web/run.sh", 0o755)
    os.symlink("conf/site.conf", repo.path / "roles/web/current.conf")
    repo.git("add", "-A")
    # A submodule: a gitlink entry pointing at some commit.
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},roles/web/vendor")
    repo.git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "tree")
    return repo, repo.head()


def test_a_role_tree_lists_files_links_and_submodules(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path)
    out = subprocess.run(
        ["git", *ls_tree_args(head, "web")], cwd=repo.path, capture_output=True, check=True
    ).stdout
    tree = read_role_tree(out, "web")
    assert {e.path: e.mode for e in tree.files} == {"conf/site.conf": 0o644, "run.sh": 0o755}
    assert tree.submodules == ("vendor",) and not tree.sha256 and not tree.empty
    link_blob = tree.links["current.conf"]
    entries = tree.entries({link_blob: b"conf/site.conf"})
    assert [e.path for e in entries] == ["conf/site.conf", "current.conf", "run.sh"]
    assert entries[1].link == "conf/site.conf" and entries[1].git_blob == link_blob
    assert read_role_tree(out, "nope").empty


def test_the_server_serves_the_same_manifest_without_the_submodule(tmp_path: Path) -> None:
    repo, head = _repo(tmp_path)
    mirror = Mirror(tmp_path / "mirror.git", str(repo.path))
    mirror.fetch()
    by_path = mirror.manifest(head, "web").by_path()
    assert set(by_path) == {"conf/site.conf", "current.conf", "run.sh"}
    assert by_path["current.conf"].link == "conf/site.conf"
    assert by_path["conf/site.conf"].git_blob == repo.git(
        "rev-parse", f"{head}:roles/web/conf/site.conf"
    )
