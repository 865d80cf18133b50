"""Unpacking untrusted archives: every trick is refused with a clear error."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from fleetcore.errors import UnsafeArchiveError, VerifyError
from fleetcore.release import Manifest, ManifestEntry, git_blob_id, measure_tree, unpack

LIMIT = 10 * 1024 * 1024


def make_tar(
    path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w"
) -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def file_(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def test_unpacks_files_links_and_measures_them(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "a.tar.gz",
        [
            file_("roles/web/run.sh", b"#!/bin/sh\n", 0o4755),
            file_("roles/web/conf/app.conf", b"a=1\n", 0o666),
            link("roles/web/conf/current.conf", "app.conf"),
            file_("roles/other/x", b"not ours"),
        ],
        "w:gz",
    )
    out = unpack(archive, tmp_path / "out", prefix="roles/web", max_bytes=LIMIT, git_blobs=True)
    assert sorted(out.files) == ["conf/app.conf", "conf/current.conf", "run.sh"]
    # setuid and world-writable bits from an archive are never honoured
    assert stat.S_IMODE((tmp_path / "out/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "out/conf/app.conf").stat().st_mode) == 0o644
    assert os.readlink(tmp_path / "out/conf/current.conf") == "app.conf"
    assert out.files["conf/app.conf"].git_blob == git_blob_id(b"a=1\n")
    assert not (tmp_path / "out/x").exists()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([file_("/etc/passwd")], "absolute path"),
        ([file_("roles/web/../../evil")], "'..'"),
        ([link("roles/web/l", "/etc/passwd")], "points out of the tree"),
        ([link("roles/web/l", "../../outside")], "points out of the tree"),
        ([link("roles/web/l", "x", tarfile.LNKTYPE)], "hard link"),
        ([special("roles/web/dev", tarfile.CHRTYPE)], "device, FIFO"),
        ([special("roles/web/fifo", tarfile.FIFOTYPE)], "device, FIFO"),
        ([file_("roles/web/a"), file_("roles/web/a")], "duplicate member"),
        # The CVE-2025-4517 family: a link to a folder, then a write through it.
        ([link("roles/web/d", "."), file_("roles/web/d/x")], "lies under a link"),
        ([link("roles/web/a", "b"), link("roles/web/b", "../..")], "points out of the tree"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "abs-link",
        "rel-link-out",
        "hardlink",
        "device",
        "fifo",
        "duplicate",
        "write-through-link",
        "link-chain",
    ],
)
def test_refuses_malicious_members(tmp_path: Path, members: list, message: str) -> None:
    archive = make_tar(tmp_path / "a.tar", members)
    with pytest.raises(UnsafeArchiveError, match=message):
        unpack(archive, tmp_path / "out", prefix="roles/web", max_bytes=LIMIT)
    assert not (tmp_path / "evil").exists()


def test_link_chain_resolving_out_is_refused(tmp_path: Path) -> None:
    # Each link looks inside the tree by name, but together they lead out.
    archive = make_tar(
        tmp_path / "a.tar",
        [
            link("r/sub/up", ".."),
            link("r/sub/esc", "up/.."),
        ],
    )
    with pytest.raises(UnsafeArchiveError, match="out of the tree"):
        unpack(archive, tmp_path / "out", prefix="r", max_bytes=LIMIT)


def test_refuses_archives_over_the_size_limit(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [file_("r/big", b"\0" * 5000)], "w:gz")
    with pytest.raises(UnsafeArchiveError, match="more than the limit of 4096 bytes"):
        unpack(archive, tmp_path / "out", prefix="r", max_bytes=4096)


def test_refuses_corrupt_and_truncated_archives(tmp_path: Path) -> None:
    good = make_tar(tmp_path / "a.tar.gz", [file_("r/f", os.urandom(50_000))], "w:gz")
    data = good.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsafeArchiveError, match=r"corrupt|truncated|not a readable"):
        unpack(tmp_path / "cut.tar.gz", tmp_path / "out1", prefix="r", max_bytes=LIMIT)
    (tmp_path / "junk").write_bytes(b"this is not a tar file at all" * 30)
    with pytest.raises(UnsafeArchiveError):
        unpack(tmp_path / "junk", tmp_path / "out2", prefix="r", max_bytes=LIMIT)


def test_manifest_compare_names_each_difference(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "a.tar",
        [
            file_("r/same", b"same"),
            file_("r/changed", b"new"),
            file_("r/extra", b"e"),
            file_("r/mode", b"m", 0o755),
        ],
    )
    unpacked = unpack(archive, tmp_path / "out", prefix="r", max_bytes=LIMIT)
    manifest = Manifest(
        commit="c" * 40,
        role="web",
        entries=(
            ManifestEntry(path="same", size=4, sha256=unpacked.files["same"].sha256),
            ManifestEntry(path="changed", size=3, sha256="0" * 64),
            ManifestEntry(path="missing", size=1, sha256="0" * 64),
            ManifestEntry(path="mode", size=1, mode=0o644, sha256=unpacked.files["mode"].sha256),
        ),
    )
    found = {(f.subject, f.code) for f in manifest.compare(unpacked)}
    assert found == {
        ("changed", "file-changed"),
        ("missing", "file-missing"),
        ("extra", "file-extra"),
        ("mode", "file-mode"),
    }


def test_manifest_json_round_trip_and_rejects_malformed() -> None:
    manifest = Manifest(
        commit="a" * 40,
        role="web",
        entries=(
            ManifestEntry(path="f", size=1, mode=0o755, sha256="b" * 64),
            ManifestEntry(path="l", link="f", sha256="c" * 64),
        ),
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    bad = manifest.to_json()
    bad["files"][0]["path"] = "../escape"
    with pytest.raises(VerifyError, match="malformed manifest"):
        Manifest.from_json(bad)


def test_measure_tree_sees_edits_on_disk(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar", [file_("r/f", b"one")])
    unpacked = unpack(archive, tmp_path / "out", prefix="r", max_bytes=LIMIT)
    manifest = Manifest.from_unpacked("c" * 40, "web", unpacked)
    assert manifest.compare(measure_tree(tmp_path / "out")) == []
    (tmp_path / "out/f").write_text("two")
    assert [f.code for f in manifest.compare(measure_tree(tmp_path / "out"))] == ["file-changed"]
