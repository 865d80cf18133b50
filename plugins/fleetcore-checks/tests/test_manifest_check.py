from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from fleetcore.release import Manifest, Unpacked, unpack
from fleetcore.testing.contracts import check_check_record
from fleetcore_checks import manifest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GOOD = {
    "docker-compose.yml": (b"services:\n  web:\n    image: nginx\n", 0o644),
    "activate.sh": (b"#!/bin/sh\ndocker compose up -d\n", 0o755),
    "config/app.toml": (b"port = 8080\n", 0o644),
}


def make_tar(path: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    """A real role archive, like `git archive` makes, with the role under roles/web."""
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(f"roles/web/{name}")
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return path


def unpacked(tmp_path: Path, name: str, files: dict[str, tuple[bytes, int]]) -> Unpacked:
    archive = make_tar(tmp_path / f"{name}.tar.gz", files)
    return unpack(archive, tmp_path / name, prefix="roles/web", max_bytes=1 << 20)


@pytest.fixture
def trusted(tmp_path: Path) -> Manifest:
    return Manifest.from_unpacked(COMMIT, "web", unpacked(tmp_path, "reference", GOOD))


def record():
    (rec,) = manifest.fleetcore_register_verify_checks()
    return rec


def verify(check_ctx, trusted, got):
    return list(record().run(check_ctx("verify", None, manifest=trusted, unpacked=got)) or [])


def test_record_keeps_the_check_contract():
    check_check_record(record())
    assert record().name == "manifest"
    assert record().applies is None and record().default


def test_passes_when_the_release_matches(check_ctx, trusted, tmp_path):
    got = unpacked(tmp_path, "release", GOOD)
    assert sorted(got.files) == ["activate.sh", "config/app.toml", "docker-compose.yml"]
    assert verify(check_ctx, trusted, got) == []


def test_reports_missing_extra_changed_and_mode(check_ctx, trusted, tmp_path):
    files = dict(GOOD)
    del files["config/app.toml"]
    files["backdoor.sh"] = (b"#!/bin/sh\nnc -l 4444\n", 0o755)
    files["docker-compose.yml"] = (b"services:\n  web:\n    image: evil\n", 0o644)
    files["activate.sh"] = (GOOD["activate.sh"][0], 0o644)
    findings = verify(check_ctx, trusted, unpacked(tmp_path, "tampered", files))

    by_subject = {(f.subject, f.code): f for f in findings}
    assert set(by_subject) == {
        ("config/app.toml", "file-missing"),
        ("backdoor.sh", "file-extra"),
        ("docker-compose.yml", "file-changed"),
        ("activate.sh", "file-mode"),
    }
    assert by_subject["activate.sh", "file-mode"].expected == "0755"
    assert by_subject["activate.sh", "file-mode"].found == "0644"
    assert by_subject["docker-compose.yml", "file-changed"].message == "checksum differs"


def test_without_a_manifest_or_measurements_it_fails(check_ctx, trusted, tmp_path):
    got = unpacked(tmp_path, "release", GOOD)
    (no_manifest,) = verify(check_ctx, None, got)
    assert "no manifest" in no_manifest.message
    (not_measured,) = verify(check_ctx, trusted, None)
    assert "not measured" in not_measured.message
