"""The ``http-tarball`` fetcher against a real HTTP server serving archives
made by ``git archive`` the way forges make them."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import pytest

from fleetcore.config.convert import structure
from fleetcore.config.units import Duration
from fleetcore.errors import ConfigError, FetchError, VerifyError
from fleetcore.plugin.types import SourceSettings
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore_git.git import GitSource
from fleetcore_git.tarball import TarballOptions, TarballSource

FILES = {
    "fleet.toml": "[fleet]\nname = 'test'\n",
    "devices/pi-1.toml": "role = 'web'\n",
    "roles/web/activate.sh": "#!/bin/sh\necho up\n",
    "roles/web/config/app.conf": "marker=v1\n",
    "roles/other/role.toml": "# another role\n",
}
ROLE_PATHS = {"activate.sh", "config/app.conf", "big.bin", "current.conf"}


@pytest.fixture
def repo(fleet_repo: FleetRepo) -> FleetRepo:
    fleet_repo.write({**FILES, "roles/web/big.bin": os.urandom(200_000)})
    (fleet_repo.path / "roles/web/current.conf").symlink_to("config/app.conf")
    fleet_repo.commit(message="first")
    return fleet_repo


def git_bytes(repo: FleetRepo, *args: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo.path), *args], capture_output=True, check=True
    ).stdout


def archive_of(repo: FleetRepo, commit: str, *, top: bool = True, fmt: str = "tar.gz") -> bytes:
    prefix = [f"--prefix=fleet-{commit}/"] if top else []
    return git_bytes(repo, "archive", f"--format={fmt}", *prefix, commit)


@dataclass
class Forge:
    """A fleet repo published on the tarball server the way a forge does it."""

    server: Any
    repo: FleetRepo
    settings: SourceSettings

    def publish(self, commit: str | None = None, *, top: bool = True) -> str:
        """Serve the archive and raw files of ``commit`` (default: head)."""
        commit = commit or self.repo.head()
        archive = archive_of(self.repo, commit, top=top)
        self.server.serve(f"/archive/{commit}.tar.gz", archive)
        names = git_bytes(self.repo, "ls-tree", "-r", "-z", "--name-only", commit).split(b"\0")
        for name in filter(None, names):
            path = name.decode()
            blob = git_bytes(self.repo, "cat-file", "blob", f"{commit}:{path}")
            self.server.serve(f"/raw/{commit}/{path}", blob)
        return commit

    def source(self, **options: Any) -> TarballSource:
        options.setdefault("archive_url", self.server.url("/archive/{commit}.tar.gz"))
        options.setdefault("timeout", Duration(20))
        return TarballSource(self.settings, TarballOptions(**options))

    def archive_requests(self) -> list[dict[str, str]]:
        return [r for r in self.server.requests if r["path"].startswith("/archive/")]


@pytest.fixture
def forge(tarball_server, repo, settings_for) -> Forge:
    return Forge(tarball_server, repo, settings_for(repo.url))


# -- fetch and read ----------------------------------------------------------------------


def test_fetch_and_read_from_a_forge_archive(forge, verify, tmp_path):
    commit = forge.publish()
    src = forge.source()
    assert src.head("main") == commit

    files = src.read(commit, ["fleet.toml", "devices/pi-1.toml", "devices/nope.toml"])
    assert files == {
        "fleet.toml": FILES["fleet.toml"].encode(),
        "devices/pi-1.toml": FILES["devices/pi-1.toml"].encode(),
    }
    (tmp_path / "w").mkdir()
    fetched = src.fetch(commit, "web", tmp_path / "w")
    assert fetched.prefix == f"fleet-{commit}/roles/web"
    entries = fetched.manifest.by_path()
    assert set(entries) == ROLE_PATHS
    assert entries["current.conf"].link == "config/app.conf"
    assert entries["activate.sh"].mode == 0o755
    unpacked, findings = verify(fetched)
    assert findings == []
    assert os.readlink(unpacked.root / "current.conf") == "config/app.conf"
    # read() and fetch() of one commit share one download.
    assert len(forge.archive_requests()) == 1


def test_read_with_raw_url(forge):
    commit = forge.publish()
    src = forge.source(raw_url=forge.server.url("/raw/{commit}/{path}"))
    assert src.read(commit, ["fleet.toml", "devices/nope.toml"]) == {
        "fleet.toml": FILES["fleet.toml"].encode()
    }
    assert forge.archive_requests() == []
    assert [r["path"] for r in forge.server.requests] == [
        f"/raw/{commit}/fleet.toml",
        f"/raw/{commit}/devices/nope.toml",
    ]


def test_archive_without_a_top_folder(forge, verify, tmp_path):
    commit = forge.publish(top=False)
    src = forge.source()
    assert src.read(commit, ["fleet.toml"]) == {"fleet.toml": FILES["fleet.toml"].encode()}
    (tmp_path / "w").mkdir()
    fetched = src.fetch(commit, "web", tmp_path / "w")
    assert fetched.prefix == "roles/web"
    assert verify(fetched)[1] == []


def test_tampered_archive_is_detected(forge, verify, tamper, tmp_path):
    commit = forge.publish()
    (tmp_path / "w").mkdir()
    fetched = forge.source().fetch(commit, "web", tmp_path / "w")
    tamper(fetched.archive, f"fleet-{commit}/roles/web/activate.sh")
    _, findings = verify(fetched)
    assert [(f.subject, f.message) for f in findings] == [("activate.sh", "checksum differs")]


# -- a manifest from elsewhere ------------------------------------------------------------------


@pytest.fixture
def git_manifest(repo, settings_for, tmp_path):
    """The manifest the git fetcher derives from the tree."""
    work = tmp_path / "git-work"
    work.mkdir()
    src = GitSource(settings_for(repo.url, cache="git-cache"))
    return src.fetch(repo.head(), "web", work).manifest


def test_manifest_url(forge, verify, tamper, git_manifest, tmp_path):
    commit = forge.publish()
    body = json.dumps(git_manifest.to_json()).encode()
    forge.server.serve(f"/manifests/{commit}/web.json", body)
    src = forge.source(
        manifest_url=forge.server.url("/manifests/{commit}/{role}.json"),
    )
    (tmp_path / "w").mkdir()
    fetched = src.fetch(commit, "web", tmp_path / "w")
    assert fetched.manifest == git_manifest
    assert fetched.manifest.wants_git_blob
    assert verify(fetched)[1] == []

    tamper(fetched.archive, f"fleet-{commit}/roles/web/config/app.conf")
    _, findings = verify(fetched)
    assert [(f.subject, f.message) for f in findings] == [("config/app.conf", "checksum differs")]

    # A manifest for another role (or commit) is refused.
    forge.server.serve(f"/manifests/{commit}/other.json", body)
    (tmp_path / "w2").mkdir()
    with pytest.raises(VerifyError, match="not role 'other'"):
        src.fetch(commit, "other", tmp_path / "w2")
    (tmp_path / "w3").mkdir()
    forge.server.files.pop(f"/manifests/{commit}/other.json")
    with pytest.raises(FetchError, match="no manifest for role 'other'"):
        src.fetch(commit, "other", tmp_path / "w3")


# -- resuming --------------------------------------------------------------------------------


def test_interrupted_download_resumes_with_a_range_request(forge, verify, tmp_path):
    commit = forge.publish()
    total = len(forge.server.files[f"/archive/{commit}.tar.gz"].body)
    cut = total // 3
    forge.server.cut_after = cut
    src = forge.source()
    (tmp_path / "w1").mkdir()
    with pytest.raises(FetchError) as err:
        src.fetch(commit, "web", tmp_path / "w1")
    (partial,) = (tmp_path / "cache").glob("*.part")
    # All that was sent, unless the connection's reset overtook the last bytes.
    kept = partial.stat().st_size
    assert 0 < kept <= cut
    assert f"{kept} bytes kept, the next fetch resumes" in str(err.value)

    (tmp_path / "w2").mkdir()
    fetched = src.fetch(commit, "web", tmp_path / "w2")
    first, second = forge.archive_requests()
    assert "Range" not in first
    assert second["Range"] == f"bytes={kept}-"
    assert second["If-Range"] == '"v1"'
    assert forge.server.sent == [cut, total - kept]
    assert verify(fetched)[1] == []
    assert list((tmp_path / "cache").glob("*.part")) == []


def test_server_ignoring_ranges_is_downloaded_again(forge, verify, tmp_path):
    commit = forge.publish()
    total = len(forge.server.files[f"/archive/{commit}.tar.gz"].body)
    forge.server.cut_after = 1000
    forge.server.honour_range = False
    src = forge.source()
    (tmp_path / "w1").mkdir()
    with pytest.raises(FetchError):
        src.fetch(commit, "web", tmp_path / "w1")
    (tmp_path / "w2").mkdir()
    fetched = src.fetch(commit, "web", tmp_path / "w2")
    assert forge.archive_requests()[1]["Range"].startswith("bytes=")
    assert forge.server.sent == [1000, total]
    assert verify(fetched)[1] == []


def test_a_changed_file_is_not_spliced_onto_the_old_one(forge, verify, tmp_path):
    commit = forge.publish()
    url = f"/archive/{commit}.tar.gz"
    forge.server.cut_after = 5000
    src = forge.source()
    (tmp_path / "w1").mkdir()
    with pytest.raises(FetchError):
        src.fetch(commit, "web", tmp_path / "w1")
    # The forge regenerates the archive: same files, other bytes, new ETag.
    plain = archive_of(forge.repo, commit, fmt="tar")
    regenerated = gzip.compress(plain, compresslevel=1)
    assert regenerated[:5000] != forge.server.files[url].body[:5000]
    forge.server.serve(url, regenerated, '"v2"')
    (tmp_path / "w2").mkdir()
    fetched = src.fetch(commit, "web", tmp_path / "w2")
    assert forge.archive_requests()[1]["If-Range"] == '"v1"'
    assert forge.server.sent == [5000, len(regenerated)]
    assert verify(fetched)[1] == []


def test_a_corrupt_download_is_not_kept(forge, verify, tmp_path):
    commit = forge.publish()
    url = f"/archive/{commit}.tar.gz"
    good = forge.server.files[url]
    forge.server.serve(url, good.body[: len(good.body) // 2] + b"\0" * 100)
    src = forge.source()
    (tmp_path / "w1").mkdir()
    with pytest.raises(FetchError, match="corrupt or truncated"):
        src.fetch(commit, "web", tmp_path / "w1")
    forge.server.files[url] = good
    (tmp_path / "w2").mkdir()
    assert verify(src.fetch(commit, "web", tmp_path / "w2"))[1] == []


# -- credentials and errors ----------------------------------------------------------------------


def test_credentials_go_in_basic_auth_and_not_across_redirects(forge, verify, tmp_path):
    commit = forge.publish()
    forge.server.files[f"/real/{commit}.tar.gz"] = forge.server.files.pop(
        f"/archive/{commit}.tar.gz"
    )
    forge.server.redirects[f"/archive/{commit}.tar.gz"] = f"/real/{commit}.tar.gz"
    src = forge.source(
        archive_url=forge.server.url("/archive/{commit}.tar.gz", "deploy:s3cret"),
    )
    (tmp_path / "w").mkdir()
    assert verify(src.fetch(commit, "web", tmp_path / "w"))[1] == []
    first, redirected = forge.server.requests
    assert first["Authorization"] == "Basic ZGVwbG95OnMzY3JldA=="  # deploy:s3cret
    assert "Authorization" not in redirected


def test_wrong_credentials_and_missing_archives(forge, tmp_path):
    commit = forge.publish()
    forge.server.credentials = "deploy:right"
    src = forge.source(
        archive_url=forge.server.url("/archive/{commit}.tar.gz", "deploy:wrong"),
    )
    (tmp_path / "w").mkdir()
    with pytest.raises(FetchError, match="HTTP 401") as err:
        src.fetch(commit, "web", tmp_path / "w")
    assert "wrong" not in str(err.value)
    assert "***@127.0.0.1" in str(err.value)
    forge.server.credentials = None
    with pytest.raises(FetchError, match="HTTP 404") as err:
        src.fetch("b" * 40, "web", tmp_path / "w")
    assert "b" * 40 in str(err.value)


def test_unknown_role_and_branch(forge, tmp_path):
    commit = forge.publish()
    src = forge.source()
    (tmp_path / "w").mkdir()
    with pytest.raises(FetchError) as err:
        src.fetch(commit, "db", tmp_path / "w")
    assert "'db'" in str(err.value)
    assert commit in str(err.value)
    with pytest.raises(FetchError, match="branch 'nope' not found"):
        src.head("nope")


def test_unreachable_server(repo, settings_for, closed_port, tmp_path):
    url = f"http://deploy:s3cret@127.0.0.1:{closed_port}/archive/{{commit}}.tar.gz"
    src = TarballSource(settings_for(repo.url), TarballOptions(archive_url=url))
    (tmp_path / "w").mkdir()
    with pytest.raises(FetchError) as err:
        src.fetch(repo.head(), "web", tmp_path / "w")
    message = str(err.value)
    assert "s3cret" not in message
    assert f"http://***@127.0.0.1:{closed_port}/archive/{repo.head()}.tar.gz" in message
    assert "refused" in message


def test_a_silent_server_is_cut_off_by_the_timeout(repo, settings_for, silent_port, tmp_path):
    url = f"http://127.0.0.1:{silent_port}/archive/{{commit}}.tar.gz"
    options = TarballOptions(archive_url=url, timeout=Duration(1))
    src = TarballSource(settings_for(repo.url), options)
    (tmp_path / "w").mkdir()
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        src.fetch(repo.head(), "web", tmp_path / "w")
    assert time.monotonic() - started < 5


def test_options_from_config():
    def parse(data):
        return structure(data, TarballOptions, source="agent.toml", root="source")

    options = parse({"archive_url": "https://f/a/{commit}.tar.gz", "timeout": "5m"})
    assert options.timeout == Duration(300)
    assert options.raw_url is None
    with pytest.raises(ConfigError, match=r"required key missing @ source\.archive_url"):
        parse({})
    with pytest.raises(ConfigError, match=r"archive_url must contain \{commit\} @ source"):
        parse({"archive_url": "https://f/a/main.tar.gz"})
    with pytest.raises(ConfigError, match=r"unknown placeholder \{sha\}.*@ source.raw_url"):
        parse({"archive_url": "https://f/{commit}", "raw_url": "https://f/{sha}/{path}"})
    with pytest.raises(ConfigError, match="must be an http:// or https:// URL"):
        parse({"archive_url": "file:///srv/{commit}.tar"})
    with pytest.raises(ConfigError, match=r"manifest_url must contain \{role\}"):
        parse({"archive_url": "https://f/{commit}", "manifest_url": "https://f/{commit}.json"})


def test_a_download_reports_its_bytes_when_someone_watches(forge, tmp_path):
    """`agent once` on a terminal hands a meter factory down (SourceSettings.progress)."""
    import attrs

    commit = forge.publish()
    size = len(archive_of(forge.repo, commit))
    calls: list[tuple[str, int | None]] = []
    seen: list[int] = []

    def meter(label: str, total: int | None) -> Any:
        calls.append((label, total))
        return seen.append

    forge.settings = attrs.evolve(forge.settings, progress=meter)
    (tmp_path / "w").mkdir()
    forge.source().fetch(commit, "web", tmp_path / "w")
    assert calls == [(f"download {commit[:12]}", size)]
    assert seen == sorted(seen) and seen[-1] == size
