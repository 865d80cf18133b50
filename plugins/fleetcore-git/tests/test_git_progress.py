"""The ``git`` fetcher's progress meter, against a real git daemon: a fetch
someone watches reports the bytes received as git streams them; a fetch
nobody watches runs git exactly as before."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetcore.config.units import Duration
from fleetcore.errors import FetchError
from fleetcore.plugin.types import SourceSettings
from fleetcore.testing.faultproxy import Fault, FaultProxy
from fleetcore_git._progress import received
from fleetcore_git.git import GitOptions, GitSource

BIG = 3 << 20
"""Incompressible role data: a pack git needs a while to receive through a
slow link, long enough to measure a rate and show the bytes."""


class Recorder:
    """A progress factory that keeps every meter made and every update."""

    def __init__(self) -> None:
        self.meters: list[tuple[str, int | None]] = []
        self.updates: list[int] = []

    def __call__(self, label: str, total: int | None):
        self.meters.append((label, total))
        return self.updates.append


def big_remote(make_remote) -> tuple[str, str, object]:
    remote = make_remote("daemon")
    remote.repo.write(
        {
            "fleet.toml": "[fleet]\nname = 'test'\n",
            "roles/web/role.toml": "# big\n",
            "roles/web/blob.bin": os.urandom(BIG),
        }
    )
    return remote.url, remote.repo.commit(message="big"), remote


def git_source(tmp_path: Path, url: str, name: str, progress=None) -> GitSource:
    settings = SourceSettings(repo=url, cache_dir=tmp_path / name, progress=progress)
    return GitSource(settings, GitOptions(timeout=Duration(120)))


def fetch_commands(trace: Path) -> list[str]:
    """The ``git fetch`` command lines git traced (GIT_TRACE)."""
    lines = trace.read_text().splitlines() if trace.exists() else []
    return [line for line in lines if "built-in: git fetch" in line or "git fetch " in line]


def test_a_watched_fetch_reports_bytes_as_they_arrive(
    make_remote, verify, git_daemon, tmp_path, monkeypatch
):
    url, commit, _ = big_remote(make_remote)
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    with FaultProxy(("127.0.0.1", git_daemon.port)) as proxy:
        # Each piece of the answer waits: a slow link, as a device on a modem sees it.
        proxy.fault = Fault.latency(0.05)
        slow_url = url.replace(f":{git_daemon.port}/", f":{proxy.port}/")
        meters = Recorder()
        src = git_source(tmp_path, slow_url, "watched", progress=meters)
        fetched = src.fetch(commit, "web", tmp_path)

    _, findings = verify(fetched)
    assert findings == []
    assert meters.meters == [(f"download {commit[:12]}", None)]
    # git measures a rate every half second: several readings, never going back.
    assert len(set(meters.updates)) >= 2, meters.updates
    assert meters.updates == sorted(meters.updates)
    assert meters.updates[-1] >= BIG * 0.95
    assert any("--progress" in line for line in fetch_commands(trace))


def test_a_fetch_nobody_watches_runs_git_as_before(make_remote, tmp_path, monkeypatch):
    url, commit, _ = big_remote(make_remote)
    trace = tmp_path / "trace"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    git_source(tmp_path, url, "quiet").fetch(commit, "web", tmp_path)

    commands = fetch_commands(trace)
    assert commands, "git fetch did not run"
    assert all("--quiet" in line and "--progress" not in line for line in commands)


@pytest.mark.parametrize("watched", [False, True])
def test_a_failed_fetch_says_why_with_or_without_a_meter(make_remote, tmp_path, watched):
    url, _, _ = big_remote(make_remote)
    meters = Recorder()
    src = git_source(tmp_path, url, "cache", progress=meters if watched else None)
    with pytest.raises(FetchError) as err:
        src.read("1" * 40, ["fleet.toml"])
    message = str(err.value)
    assert "1" * 40 in message
    assert "not our ref" in message
    for noise in ("Receiving objects", "remote: ", "From ", "[new ref]"):
        assert noise not in message
    # The branch fetched as a fallback moved bytes; the meter may have shown them.
    assert meters.updates == sorted(meters.updates)


def test_failed_fetch_messages_are_the_same_watched_or_not(make_remote, tmp_path, closed_port):
    url, _, _ = big_remote(make_remote)
    messages = []
    for name, progress in (("a", None), ("b", Recorder())):
        for target in (url, f"git://127.0.0.1:{closed_port}/fleet"):
            src = git_source(tmp_path, target, f"{name}-{len(messages)}", progress=progress)
            with pytest.raises(FetchError) as err:
                src.read("1" * 40, ["fleet.toml"])
            messages.append(str(err.value))
    assert messages[:2] == messages[2:]


def test_receiving_lines_are_read_as_git_writes_them():
    lines = [
        "Receiving objects:   0% (1/302)",
        "Receiving objects:  45% (136/302), 1.20 MiB | 2.40 MiB/s",
        "Receiving objects:  99% (299/302), 5.50 MiB | 2.40 MiB/s",
        "Receiving objects: 100% (302/302), 5.73 MiB | 2.40 MiB/s, done.",
        "Unpacking objects: 100% (3/3), 812 bytes | 812.00 KiB/s, done.",
        "remote: Counting objects:  50% (1/2)",
        "fatal: remote error: upload-pack: not our ref",
    ]
    assert [received(line) for line in lines] == [
        (0, None),
        (45, int(1.2 * 2**20)),
        (99, int(5.5 * 2**20)),
        (100, int(5.73 * 2**20)),
        (100, 812),
        None,
        None,
    ]


def test_a_broken_meter_does_not_break_the_fetch(make_remote, verify, tmp_path):
    url, commit, _ = big_remote(make_remote)

    def broken(label: str, total: int | None):
        raise OSError("the terminal went away")

    fetched = git_source(tmp_path, url, "broken", progress=broken).fetch(commit, "web", tmp_path)
    assert verify(fetched)[1] == []
