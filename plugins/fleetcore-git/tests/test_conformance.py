"""The three fetchers of this package against fleetcore's fetcher kit."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetcore.plugin.types import Fetcher
from fleetcore.testing.conformance.fetcher import FetcherKit
from fleetcore.testing.gitrepo import FleetRepo, GitDaemon
from fleetcore_git import git, remote_archive, tarball


def only(records: Any) -> Fetcher:
    (record,) = records
    return record


class TestGitFetcher(FetcherKit):
    @pytest.fixture
    def record(self) -> Fetcher:
        return only(git.fleetcore_register_fetchers())

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        return {"timeout": "30s"}


class TestGitArchiveFetcher(FetcherKit):
    """Over ``git daemon``: ``git archive --remote`` as devices use it."""

    @pytest.fixture
    def record(self) -> Fetcher:
        return only(remote_archive.fleetcore_register_fetchers())

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        return {"timeout": "30s"}

    @pytest.fixture
    def kit_repo(self, git_daemon: GitDaemon, tmp_path: Path) -> FleetRepo:
        return FleetRepo.create(git_daemon.base / f"kit-{tmp_path.name}")

    @pytest.fixture
    def repo_url(self, kit_repo: FleetRepo, git_daemon: GitDaemon) -> str:
        return git_daemon.url(kit_repo)


class TestHttpTarballFetcher(FetcherKit):
    """A forge serving ``git archive`` tarballs; the head from the git repo."""

    @pytest.fixture
    def record(self) -> Fetcher:
        return only(tarball.fleetcore_register_fetchers())

    @pytest.fixture
    def options(self, tarball_server: Any) -> Mapping[str, Any]:
        return {"archive_url": tarball_server.url("/archive/{commit}.tar.gz"), "timeout": "30s"}

    @pytest.fixture
    def publish(self, tarball_server: Any) -> Callable[[FleetRepo, str], None]:
        def publish(repo: FleetRepo, commit: str) -> None:
            top = f"--prefix=fleet-{commit}/"
            archive = subprocess.run(
                ["git", "-C", str(repo.path), "archive", "--format=tar.gz", top, commit],
                capture_output=True,
                check=True,
            ).stdout
            tarball_server.serve(f"/archive/{commit}.tar.gz", archive)

        return publish
