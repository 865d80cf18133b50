"""The ``git-archive`` fetcher against real ``git upload-archive``: a plain
path, file:// and git daemon (smart HTTP does not carry it: an error)."""

from __future__ import annotations

import hashlib
import os

import pytest

from fleetcore.config.units import Duration
from fleetcore.errors import FetchError
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore_git.remote_archive import RemoteArchiveOptions, RemoteArchiveSource

FILES = {
    "fleet.toml": "[fleet]\nname = 'test'\n",
    "devices/pi-1.toml": "role = 'web'\n",
    "roles/web/activate.sh": "#!/bin/sh\necho up\n",
    "roles/web/config/app.conf": "marker=v1\n",
    "roles/web/data.bin": bytes(range(256)) * 64,
    "roles/other/role.toml": "# another role\n",
}
ROLE_PATHS = {"activate.sh", "config/app.conf", "data.bin", "current.conf"}


def populate(repo: FleetRepo) -> str:
    repo.write(FILES)
    (repo.path / "roles/web/current.conf").symlink_to("config/app.conf")
    return repo.commit(message="first")


def source(settings_for, url: str, timeout: float = 60) -> RemoteArchiveSource:
    return RemoteArchiveSource(settings_for(url), RemoteArchiveOptions(timeout=Duration(timeout)))


@pytest.mark.parametrize("transport", ["path", "file", "daemon"])
def test_head_read_and_fetch_verify(transport, make_remote, settings_for, verify, tmp_path):
    remote = make_remote(transport)
    commit = populate(remote.repo)
    src = source(settings_for, remote.url)

    assert src.head("main") == commit
    wanted = ["devices/nope.toml", "fleet.toml", "devices/pi-1.toml", "roles/x/role.toml"]
    assert src.read(commit, wanted) == {
        "fleet.toml": FILES["fleet.toml"].encode(),
        "devices/pi-1.toml": FILES["devices/pi-1.toml"].encode(),
    }
    assert src.read(commit, ["nope.toml"]) == {}
    assert src.read(commit, ["roles/web"]) == {}  # a folder is not a file

    (tmp_path / "w").mkdir()
    fetched = src.fetch(commit, "web", tmp_path / "w")
    assert fetched.prefix == "roles/web"
    entries = fetched.manifest.by_path()
    assert set(entries) == ROLE_PATHS
    data = FILES["roles/web/data.bin"]
    assert entries["data.bin"].sha256 == hashlib.sha256(data).hexdigest()
    assert entries["data.bin"].size == len(data)
    assert entries["activate.sh"].mode == 0o755
    assert entries["config/app.conf"].mode == 0o644
    assert entries["current.conf"].link == "config/app.conf"
    assert not fetched.manifest.wants_git_blob

    unpacked, findings = verify(fetched)
    assert findings == []
    assert set(unpacked.files) == ROLE_PATHS
    assert os.readlink(unpacked.root / "current.conf") == "config/app.conf"


def test_second_fetch_after_a_change(make_remote, settings_for, verify, tmp_path):
    remote = make_remote("daemon")
    first = populate(remote.repo)
    src = source(settings_for, remote.url)
    (tmp_path / "w1").mkdir()
    assert verify(src.fetch(first, "web", tmp_path / "w1"))[1] == []
    second = remote.repo.commit({"roles/web/config/app.conf": "marker=v2\n"}, "second")
    assert src.head("main") == second
    (tmp_path / "w2").mkdir()
    unpacked, findings = verify(src.fetch(second, "web", tmp_path / "w2"))
    assert findings == []
    assert (unpacked.root / "config/app.conf").read_text() == "marker=v2\n"
    # No local history is kept.
    assert not (tmp_path / "cache").exists()


def test_tampered_archive_is_detected(make_remote, settings_for, verify, tamper, tmp_path):
    remote = make_remote("daemon")
    commit = populate(remote.repo)
    (tmp_path / "w").mkdir()
    fetched = source(settings_for, remote.url).fetch(commit, "web", tmp_path / "w")
    tamper(fetched.archive, "roles/web/data.bin")
    _, findings = verify(fetched)
    assert [(f.subject, f.message) for f in findings] == [("data.bin", "checksum differs")]


def test_unknown_role(make_remote, settings_for, tmp_path):
    remote = make_remote("daemon")
    commit = populate(remote.repo)
    (tmp_path / "w").mkdir()
    with pytest.raises(FetchError) as err:
        source(settings_for, remote.url).fetch(commit, "db", tmp_path / "w")
    assert "'db'" in str(err.value)
    assert commit in str(err.value)


def test_unknown_branch(make_remote, settings_for):
    remote = make_remote("daemon")
    populate(remote.repo)
    with pytest.raises(FetchError, match="branch 'nope' not found") as err:
        source(settings_for, remote.url).head("nope")
    assert remote.url in str(err.value)


def test_server_refusing_commit_ids_says_how_to_allow_them(make_remote, settings_for, tmp_path):
    remote = make_remote("daemon")
    commit = populate(remote.repo)
    remote.repo.git("config", "uploadArchive.allowUnreachable", "false")
    (tmp_path / "w").mkdir()
    for call in (
        lambda: source(settings_for, remote.url).fetch(commit, "web", tmp_path / "w"),
        lambda: source(settings_for, remote.url).read(commit, ["fleet.toml"]),
    ):
        with pytest.raises(FetchError) as err:
            call()
        assert "uploadArchive.allowUnreachable true" in str(err.value)
        assert "no such ref" in str(err.value)


def test_smart_http_is_refused_with_a_hint(make_remote, settings_for, tmp_path):
    remote = make_remote("http")
    commit = populate(remote.repo)
    src = source(settings_for, remote.url)
    assert src.head("main") == commit  # ls-remote works over HTTP
    (tmp_path / "w").mkdir()
    with pytest.raises(FetchError, match="smart HTTP never does"):
        src.fetch(commit, "web", tmp_path / "w")


def test_unreachable_repo(settings_for, closed_port, tmp_path):
    url = f"git://127.0.0.1:{closed_port}/fleet"
    src = source(settings_for, url, timeout=20)
    (tmp_path / "w").mkdir()
    for call in (
        lambda: src.head("main"),
        lambda: src.read("a" * 40, ["fleet.toml"]),
        lambda: src.fetch("a" * 40, "web", tmp_path / "w"),
    ):
        with pytest.raises(FetchError) as err:
            call()
        assert url in str(err.value)
        assert "Connection refused" in str(err.value)


def test_a_silent_server_is_cut_off_by_the_timeout(settings_for, silent_port, tmp_path):
    src = source(settings_for, f"git://127.0.0.1:{silent_port}/fleet", timeout=1)
    (tmp_path / "w").mkdir()
    with pytest.raises(FetchError, match="did not finish within 1s"):
        src.fetch("a" * 40, "web", tmp_path / "w")
