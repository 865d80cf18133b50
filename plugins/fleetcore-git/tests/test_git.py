"""The ``git`` fetcher against real git: a plain path, file://, git daemon and
smart HTTP (git http-backend)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from fleetcore.config.convert import structure
from fleetcore.config.units import Duration
from fleetcore.errors import ConfigError, FetchError
from fleetcore.plugin.manager import PluginManager
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore_git._common import git_reason, redact, repo_url
from fleetcore_git.git import KEEP_REFS, REF_PREFIX, GitOptions, GitSource

TRANSPORTS = ["path", "file", "daemon", "http"]

FILES = {
    "fleet.toml": "[fleet]\nname = 'test'\n",
    "devices/pi-1.toml": "role = 'web'\n",
    "roles/web/activate.sh": "#!/bin/sh\necho up\n",
    "roles/web/config/app.conf": "marker=v1\n",
    "roles/web/role.toml": '[health]\nsettle = "0s"\n',
    "roles/web/data.bin": bytes(range(256)) * 64,
    "roles/other/role.toml": "# another role\n",
}
ROLE_PATHS = {"activate.sh", "config/app.conf", "role.toml", "data.bin", "current.conf"}


def populate(repo: FleetRepo) -> str:
    repo.write(FILES)
    (repo.path / "roles/web/current.conf").symlink_to("config/app.conf")
    return repo.commit(message="first")


def source(settings_for, url: str, **options) -> GitSource:
    return GitSource(settings_for(url), GitOptions(**options))


def git(cache: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(cache), *args], capture_output=True, text=True, check=True
    ).stdout


# -- every transport ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_head_read_and_fetch_verify(transport, make_remote, settings_for, verify, tmp_path):
    remote = make_remote(transport)
    commit = populate(remote.repo)
    src = source(settings_for, remote.url)

    assert src.head("main") == commit

    files = src.read(commit, ["fleet.toml", "devices/pi-1.toml", "devices/nope.toml", "roles"])
    assert files == {
        "fleet.toml": FILES["fleet.toml"].encode(),
        "devices/pi-1.toml": FILES["devices/pi-1.toml"].encode(),
    }

    work = tmp_path / "work"
    work.mkdir()
    fetched = src.fetch(commit, "web", work)
    assert fetched.archive.parent == work
    assert fetched.prefix == "roles/web"
    manifest = fetched.manifest
    assert (manifest.commit, manifest.role) == (commit, "web")
    entries = manifest.by_path()
    assert set(entries) == ROLE_PATHS
    assert entries["activate.sh"].mode == 0o755
    assert entries["role.toml"].mode == 0o644
    assert entries["data.bin"].size == len(FILES["roles/web/data.bin"])
    blob = remote.repo.git("rev-parse", f"{commit}:roles/web/data.bin")
    assert entries["data.bin"].git_blob == blob
    link = entries["current.conf"]
    assert link.link == "config/app.conf"
    assert link.git_blob == remote.repo.git("rev-parse", f"{commit}:roles/web/current.conf")
    assert manifest.wants_git_blob

    unpacked, findings = verify(fetched)
    assert findings == []
    assert set(unpacked.files) == ROLE_PATHS
    assert (unpacked.root / "config/app.conf").read_text() == "marker=v1\n"
    assert os.readlink(unpacked.root / "current.conf") == "config/app.conf"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_second_fetch_after_one_file_change_transfers_little(
    transport, make_remote, settings_for, verify, tmp_path
):
    remote = make_remote(transport)
    big = os.urandom(1 << 20)  # incompressible: would show in the cache if sent again
    first = remote.repo.commit({**FILES, "roles/web/big.bin": big}, "first")
    src = source(settings_for, remote.url)
    cache = tmp_path / "cache"
    (tmp_path / "w1").mkdir()
    assert verify(src.fetch(first, "web", tmp_path / "w1"))[1] == []
    size_before = _tree_size(cache / "objects")

    second = remote.repo.commit({"roles/web/config/app.conf": "marker=v2\n"}, "second")
    assert src.head("main") == second
    (tmp_path / "w2").mkdir()
    fetched = src.fetch(second, "web", tmp_path / "w2")
    unpacked, findings = verify(fetched)
    assert findings == []
    assert (unpacked.root / "config/app.conf").read_text() == "marker=v2\n"
    assert (unpacked.root / "big.bin").read_bytes() == big
    grown = _tree_size(cache / "objects") - size_before
    assert grown < 100_000, f"the second fetch added {grown} bytes to the cache"


def _tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_a_cached_commit_needs_no_remote(make_remote, settings_for, verify, tmp_path, closed_port):
    remote = make_remote("file")
    commit = populate(remote.repo)
    source(settings_for, remote.url).read(commit, ["fleet.toml"])
    # Same cache, a remote that cannot be reached: the commit is served from the cache.
    offline = GitSource(
        settings_for(f"git://127.0.0.1:{closed_port}/fleet"), GitOptions(timeout=Duration(10))
    )
    assert offline.read(commit, ["fleet.toml"]) == {"fleet.toml": FILES["fleet.toml"].encode()}
    (tmp_path / "w").mkdir()
    assert verify(offline.fetch(commit, "web", tmp_path / "w"))[1] == []
    with pytest.raises(FetchError, match="unable to connect"):
        offline.head("main")


def test_fetched_commits_keep_refs_and_old_refs_are_pruned(make_remote, settings_for, tmp_path):
    remote = make_remote("file")
    src = source(settings_for, remote.url)
    commits = [populate(remote.repo)]
    for i in range(2 * KEEP_REFS + 1):
        # test repositories date their commits a minute apart: refs sort by them
        commits.append(remote.repo.commit({"roles/web/n.txt": str(i)}, f"change {i}"))
    seen = []
    for commit in commits:
        src.read(commit, ["fleet.toml"])
        refs = git(tmp_path / "cache", "for-each-ref", "--format=%(refname)", REF_PREFIX).split()
        seen.append(len(refs))
        assert f"{REF_PREFIX}{commit}" in refs
    # Pruned in batches, down to the newest KEEP_REFS, never above twice that.
    assert max(seen) == 2 * KEEP_REFS
    assert seen[-1] == KEEP_REFS + 1
    assert f"{REF_PREFIX}{commits[0]}" not in refs


# -- what the manifest comes from -----------------------------------------------------------


def test_tampered_archive_is_detected(make_remote, settings_for, verify, tamper, tmp_path):
    remote = make_remote("file")
    commit = populate(remote.repo)
    (tmp_path / "w").mkdir()
    fetched = source(settings_for, remote.url).fetch(commit, "web", tmp_path / "w")
    tamper(fetched.archive, "roles/web/config/app.conf")
    _, findings = verify(fetched)
    assert [(f.subject, f.message) for f in findings] == [("config/app.conf", "checksum differs")]


def test_export_attributes_do_not_change_the_archive(make_remote, settings_for, verify, tmp_path):
    remote = make_remote("file")
    commit = remote.repo.commit(
        {
            "roles/web/.gitattributes": "secret.txt export-ignore\nsubst.txt export-subst\n",
            "roles/web/secret.txt": "kept\n",
            "roles/web/subst.txt": "$Format:%H$\n",
        }
    )
    (tmp_path / "w").mkdir()
    unpacked, findings = verify(
        source(settings_for, remote.url).fetch(commit, "web", tmp_path / "w")
    )
    assert findings == []
    assert (unpacked.root / "secret.txt").read_text() == "kept\n"
    assert (unpacked.root / "subst.txt").read_text() == "$Format:%H$\n"


def test_submodule_in_role_is_refused(make_remote, settings_for, tmp_path):
    remote = make_remote("file")
    other = populate(remote.repo)
    remote.repo.git("update-index", "--add", "--cacheinfo", f"160000,{other},roles/web/vendor")
    remote.repo.git("commit", "-q", "-m", "submodule")
    commit = remote.repo.head()
    (tmp_path / "w").mkdir()
    with pytest.raises(FetchError, match="submodules are not supported in roles") as err:
        source(settings_for, remote.url).fetch(commit, "web", tmp_path / "w")
    assert "vendor" in str(err.value)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["file", "daemon", "http"])
def test_unknown_branch(transport, make_remote, settings_for):
    remote = make_remote(transport)
    populate(remote.repo)
    with pytest.raises(FetchError) as err:
        source(settings_for, remote.url).head("nope")
    assert "'nope'" in str(err.value)
    assert remote.url in str(err.value)


def test_unknown_role(make_remote, settings_for, tmp_path):
    remote = make_remote("daemon")
    commit = populate(remote.repo)
    (tmp_path / "w").mkdir()
    with pytest.raises(FetchError) as err:
        source(settings_for, remote.url).fetch(commit, "db", tmp_path / "w")
    assert "'db'" in str(err.value)
    assert commit in str(err.value)


def test_unknown_commit(make_remote, settings_for):
    remote = make_remote("daemon")
    populate(remote.repo)
    with pytest.raises(FetchError) as err:
        source(settings_for, remote.url).read("1" * 40, ["fleet.toml"])
    assert "1" * 40 in str(err.value)
    assert remote.url in str(err.value)
    assert "not our ref" in str(err.value)


def test_not_a_full_commit_id(make_remote, settings_for):
    remote = make_remote("file")
    commit = populate(remote.repo)
    with pytest.raises(FetchError, match="not a full commit id"):
        source(settings_for, remote.url).read(commit[:12], ["fleet.toml"])
    with pytest.raises(FetchError, match="not a full commit id"):
        source(settings_for, remote.url).read("--upload-pack=touch", ["fleet.toml"])


@pytest.mark.parametrize(
    "url",
    [
        "git://127.0.0.1:{port}/fleet",
        "http://deploy:s3cret-token@127.0.0.1:{port}/fleet",
        "https://deploy:s3cret-token@127.0.0.1:{port}/fleet",
    ],
)
def test_unreachable_repo_names_it_with_credentials_redacted(
    url, settings_for, closed_port, tmp_path
):
    url = url.format(port=closed_port)
    src = source(settings_for, url, timeout=Duration(20))
    for call in (lambda: src.head("main"), lambda: src.read("a" * 40, ["fleet.toml"])):
        with pytest.raises(FetchError) as err:
            call()
        message = str(err.value)
        assert "s3cret" not in message
        assert redact(url) in message
        assert "onnect" in message  # "unable to connect" / "Failed to connect"


def test_wrong_credentials_fail_at_once_without_prompting(
    make_remote, settings_for, git_http, monkeypatch
):
    remote = make_remote("http")
    populate(remote.repo)
    monkeypatch.setattr(git_http.server, "credentials", "deploy:right")
    good = git_http.url(remote.repo, "deploy:right")
    bad = git_http.url(remote.repo, "deploy:wrong")
    assert source(settings_for, good).head("main") == remote.repo.head()
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        source(settings_for, bad).head("main")
    assert time.monotonic() - started < 10
    assert "wrong" not in str(err.value)
    assert "***@127.0.0.1" in str(err.value)


def test_a_silent_server_is_cut_off_by_the_timeout(settings_for, silent_port):
    src = source(settings_for, f"git://127.0.0.1:{silent_port}/fleet", timeout=Duration(1))
    started = time.monotonic()
    with pytest.raises(FetchError, match="did not finish within 1s"):
        src.head("main")
    assert time.monotonic() - started < 8


def test_servers_that_refuse_unadvertised_commits_are_fetched_by_branch(
    make_remote, settings_for, verify, tmp_path, monkeypatch
):
    remote = make_remote("file")
    older = populate(remote.repo)
    remote.repo.commit({"roles/web/config/app.conf": "marker=v2\n"}, "second")
    # Protocol v0 serves only advertised refs: HEAD~1 cannot be asked for by id.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.version")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "0")
    src = source(settings_for, remote.url, depth=2)
    (tmp_path / "w").mkdir()
    unpacked, findings = verify(src.fetch(older, "web", tmp_path / "w"))
    assert findings == []
    assert (unpacked.root / "config/app.conf").read_text() == "marker=v1\n"
    # The fallback was taken: only it fetches the branch.
    branch_ref = git(tmp_path / "cache", "rev-parse", "refs/fleetcore/branch").strip()
    assert branch_ref == remote.repo.head()


def test_the_cache_needs_a_folder(make_remote):
    from fleetcore.plugin.types import SourceSettings

    remote = make_remote("file")
    commit = populate(remote.repo)
    with pytest.raises(FetchError, match="cache"):
        GitSource(SourceSettings(repo=remote.url)).read(commit, ["fleet.toml"])


# -- plumbing ------------------------------------------------------------------------------------


def test_redact():
    assert redact("https://user:tok@host/x") == "https://***@host/x"
    assert redact("fatal: 'https://u:p@ss@h:1/r/' failed") == "fatal: 'https://***@h:1/r/' failed"
    assert redact("ssh://git@host/fleet and https://host/a@b") == (
        "ssh://***@host/fleet and https://host/a@b"
    )
    assert redact("git@host:fleet.git") == "git@host:fleet.git"


def test_repo_url_makes_plain_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert repo_url("fleet") == str(tmp_path / "fleet")
    assert repo_url("git@host:org/fleet.git") == "git@host:org/fleet.git"
    assert repo_url("file:///srv/fleet") == "file:///srv/fleet"
    with pytest.raises(FetchError):
        repo_url("--upload-pack=x")


def test_git_reason_skips_generic_lines():
    stderr = (
        "fatal: '/srv/x' does not appear to be a git repository\n"
        "fatal: Could not read from remote repository.\n\n"
        "Please make sure you have the correct access rights\nand the repository exists.\n"
    )
    assert git_reason(stderr) == "fatal: '/srv/x' does not appear to be a git repository"
    assert git_reason(
        "fatal: unable to connect to h:\nh[0: 1.2.3.4]: errno=Connection refused\n"
    ) == ("fatal: unable to connect to h: h[0: 1.2.3.4]: errno=Connection refused")


def test_options_from_config():
    options = structure(
        {"depth": 3, "timeout": "30s"}, GitOptions, source="agent.toml", root="source"
    )
    assert options == GitOptions(depth=3, timeout=Duration(30))
    with pytest.raises(ConfigError, match=r"unknown keys \(timout\) @ source"):
        structure({"timout": "1m"}, GitOptions, source="agent.toml", root="source")
    with pytest.raises(
        ConfigError, match=r"depth must be between 1 and 1000000, got 0 @ source\.depth"
    ):
        structure({"depth": 0}, GitOptions, source="agent.toml", root="source")
    with pytest.raises(
        ConfigError, match=r"timeout must be longer than 0s, got 0s @ source\.timeout"
    ):
        structure({"timeout": "0s"}, GitOptions, source="agent.toml", root="source")


def test_entry_points_register_each_fetcher_as_its_own_plugin():
    fetchers = PluginManager().registry("fetcher")
    for name in ("git", "git-archive", "http-tarball"):
        assert name in fetchers
        assert fetchers.provider(name) == name
    assert (
        fetchers.get("git", where="source.fetcher", source="agent.toml").config_type is GitOptions
    )
    without = PluginManager(disabled=["git-archive"]).registry("fetcher")
    assert "git-archive" not in without
    assert "git" in without
