"""Every check, drift fix and the activator of this package against
fleetcore's conformance kits."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest

from fleetcore.activate.interface import ActivationContext
from fleetcore.plugin.release import Manifest, measure_tree
from fleetcore.plugin.types import Activator, Check, CheckContext, CheckKind, DriftFix
from fleetcore.testing.conformance import COMMIT, DEVICE, check_context
from fleetcore.testing.conformance.activator import ActivatorKit
from fleetcore.testing.conformance.checks import CheckKit
from fleetcore.testing.conformance.drift import DriftFixKit, Repair, check_drift_fix_record
from fleetcore.testing.services import free_port
from fleetcore_checks import (
    drift,
    health_script,
    http,
    manifest,
    script,
    signature,
    validate_script,
)


def named(records: Any, name: str) -> Any:
    return next(r for r in records if r.name == name)


def write(release: Path, files: Mapping[str, str], mode: int = 0o644) -> None:
    for rel, text in files.items():
        path = release / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)


class _Ok(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/health"
    httpd.shutdown()
    httpd.server_close()


# -- scripts ---------------------------------------------------------------------------------


class ScriptCheck(CheckKit):
    script: str

    @pytest.fixture
    def passing(self, record: Check, kit_release: Path) -> CheckContext:
        write(kit_release, {self.script: "#!/bin/sh\nexit 0\n"}, 0o755)
        return check_context(self.kind, kit_release, record=record)

    @pytest.fixture
    def failing(self, record: Check, tmp_path: Path) -> CheckContext:
        release = tmp_path / "failing"
        write(release, {self.script: "#!/bin/sh\necho 'not fit' >&2\nexit 3\n"}, 0o755)
        return check_context(self.kind, release, record=record)

    @pytest.fixture
    def not_applicable(self, record: Check, tmp_path: Path) -> CheckContext:
        (tmp_path / "empty").mkdir()
        return check_context(self.kind, tmp_path / "empty", record=record)


class TestValidateScript(ScriptCheck):
    kind = "validate"
    script = "validate.sh"

    @pytest.fixture
    def record(self) -> Check:
        return named(validate_script.fleetcore_register_validate_checks(), "validate-script")


class TestHealthScript(ScriptCheck):
    kind = "health"
    script = "health.sh"

    @pytest.fixture
    def record(self) -> Check:
        return named(health_script.fleetcore_register_health_checks(), "health-script")


# -- http and manifest -------------------------------------------------------------------------


class TestHttp(CheckKit):
    kind = "health"

    @pytest.fixture
    def record(self) -> Check:
        return named(http.fleetcore_register_health_checks(), "http")

    @pytest.fixture
    def options(self, http_server: str) -> Mapping[str, Any]:
        return {"url": http_server, "timeout": "2s"}

    @pytest.fixture
    def failing(self, record: Check, kit_release: Path) -> CheckContext:
        url = f"http://127.0.0.1:{free_port()}/health"
        return check_context("health", kit_release, record=record, options={"url": url})

    @pytest.fixture
    def not_applicable(self, record: Check, kit_release: Path) -> CheckContext:
        return check_context("health", kit_release, record=record, options={})


class TestManifest(CheckKit):
    kind = "verify"

    @pytest.fixture
    def record(self) -> Check:
        return named(manifest.fleetcore_register_verify_checks(), "manifest")

    @pytest.fixture
    def passing(self, record: Check, kit_release: Path) -> CheckContext:
        write(kit_release, {"app.conf": "v=1\n", "config/more.conf": "x\n"})
        unpacked = measure_tree(kit_release, deep=True)
        trusted = Manifest.from_unpacked(COMMIT, DEVICE.role, unpacked)
        return check_context(
            "verify", kit_release, record=record, manifest=trusted, unpacked=unpacked
        )

    @pytest.fixture
    def failing(self, record: Check, passing: CheckContext) -> CheckContext:
        assert passing.unpacked is not None
        write(passing.release_dir, {"app.conf": "v=2, changed\n"})
        unpacked = measure_tree(passing.release_dir, deep=True)
        return check_context(
            "verify",
            passing.release_dir,
            record=record,
            manifest=passing.manifest,
            unpacked=unpacked,
        )


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_NAME": "kit", "GIT_AUTHOR_EMAIL": "kit@example.com",
           "GIT_COMMITTER_NAME": "kit", "GIT_COMMITTER_EMAIL": "kit@example.com"}  # fmt: skip
    return subprocess.run(
        ["git", "-C", str(repo), *args], input=stdin, env=env, capture_output=True, check=True
    ).stdout


class TestSignature(CheckKit):
    """On a real repository with a real SSH key: a signed commit passes, the
    same files in an unsigned commit fail."""

    kind = "verify"

    @pytest.fixture
    def record(self) -> Check:
        return named(signature.fleetcore_register_verify_checks(), "signature")

    @pytest.fixture
    def repo(self, tmp_path: Path) -> tuple[Path, Path]:
        import subprocess

        key = tmp_path / "kit-key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        allowed = tmp_path / "allowed_signers"
        allowed.write_text(f"kit@example.com {key.with_suffix('.pub').read_text()}")
        repo = tmp_path / "repo"
        _git(tmp_path, "init", "-q", str(repo))
        write(repo, {f"roles/{DEVICE.role}/app.conf": "v=1\n"})
        _git(repo, "add", "-A")
        _git(repo, "-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "commit", "-q", "-S",
             "-m", "signed")  # fmt: skip
        return repo, allowed

    @pytest.fixture
    def options(self, repo: tuple[Path, Path]) -> Mapping[str, Any]:
        return {"allowed_signers": str(repo[1])}

    def _context(self, record: Check, options: Any, repo: Path, kit_release: Path) -> CheckContext:
        from fleetcore.plugin import CommitProof
        from fleetcore.plugin.release import ls_tree_args, read_role_tree

        commit = _git(repo, "rev-parse", "HEAD").decode().strip()
        tree = read_role_tree(_git(repo, *ls_tree_args(commit, DEVICE.role)), DEVICE.role)
        proof = CommitProof(
            commit_object=_git(repo, "cat-file", "commit", commit),
            root_tree=_git(repo, "cat-file", "tree", f"{commit}^{{tree}}"),
            roles_tree=_git(repo, "cat-file", "tree", f"{commit}:roles"),
        )
        trusted = Manifest(commit=commit, role=DEVICE.role, entries=tree.entries({}))
        return check_context(
            "verify", kit_release, record=record, options=options, commit=commit,
            manifest=trusted, proof=proof,
        )  # fmt: skip

    @pytest.fixture
    def passing(
        self, record: Check, options: Any, repo: tuple[Path, Path], kit_release: Path
    ) -> CheckContext:
        return self._context(record, options, repo[0], kit_release)

    @pytest.fixture
    def failing(
        self, record: Check, options: Any, repo: tuple[Path, Path], kit_release: Path
    ) -> CheckContext:
        _git(repo[0], "commit", "-q", "--amend", "--no-gpg-sign", "-m", "unsigned")
        return self._context(record, options, repo[0], kit_release)


# -- drift checks --------------------------------------------------------------------------------


def drift_record(name: str) -> Check:
    return named(drift.fleetcore_register_drift_checks(), name)


class TestDriftRelease(CheckKit):
    kind = "drift"

    @pytest.fixture
    def record(self) -> Check:
        return drift_record("release")

    @pytest.fixture
    def passing(self, record: Check, kit_release: Path) -> CheckContext:
        return check_context("drift", kit_release, record=record, desired_commit=COMMIT)

    @pytest.fixture
    def failing(self, record: Check, kit_release: Path) -> CheckContext:
        return check_context("drift", kit_release, record=record, desired_commit="f" * 40)


class TestDriftFiles(CheckKit):
    kind = "drift"

    @pytest.fixture
    def record(self) -> Check:
        return drift_record("files")

    @pytest.fixture
    def passing(self, record: Check, kit_release: Path) -> CheckContext:
        write(kit_release, {"app.conf": "v=1\n", "config/more.conf": "x\n"})
        trusted = Manifest.from_unpacked(COMMIT, DEVICE.role, measure_tree(kit_release))
        return check_context("drift", kit_release, record=record, manifest=trusted, deep=True)

    @pytest.fixture
    def failing(self, passing: CheckContext) -> CheckContext:
        (passing.release_dir / "config/more.conf").unlink()
        write(passing.release_dir, {"app.conf": "v=1, edited by hand\n"})
        return passing


class TestDriftFolders(CheckKit):
    kind = "drift"

    @pytest.fixture
    def record(self) -> Check:
        return drift_record("folders")

    @pytest.fixture
    def options(self, tmp_path: Path) -> Mapping[str, Any]:
        folder = tmp_path / "data"
        folder.mkdir(exist_ok=True)
        folder.chmod(0o750)
        return {"folders": [{"path": str(folder), "mode": "0750"}]}

    @pytest.fixture
    def failing(self, record: Check, kit_release: Path, tmp_path: Path) -> CheckContext:
        folders = [{"path": str(tmp_path / "absent"), "mode": "0750"}]
        return check_context("drift", kit_release, record=record, options={"folders": folders})

    @pytest.fixture
    def not_applicable(self, record: Check, kit_release: Path) -> CheckContext:
        return check_context("drift", kit_release, record=record, options={})


class TestDriftDisk(CheckKit):
    kind = "drift"

    @pytest.fixture
    def record(self) -> Check:
        return drift_record("disk")

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        return {"min_free": 1024}

    @pytest.fixture
    def failing(self, record: Check, kit_release: Path) -> CheckContext:
        everything = os.statvfs(kit_release)
        more = everything.f_blocks * everything.f_frsize * 2
        return check_context("drift", kit_release, record=record, options={"min_free": more})


def clock_command(offset: str) -> list[str]:
    """A stand-in for ``chronyc -c tracking`` that reports ``offset`` seconds."""
    return ["sh", "-c", f"echo 'A,B,C,D,{offset}'"]


class TestDriftClock(CheckKit):
    kind = "drift"

    @pytest.fixture
    def record(self) -> Check:
        return drift_record("clock")

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        return {"command": clock_command("0.0001")}

    @pytest.fixture
    def passing(self, record: Check, options: Mapping[str, Any], kit_release: Path) -> CheckContext:
        return check_context("drift", kit_release, record=record, options=options, deep=True)

    @pytest.fixture
    def failing(self, record: Check, kit_release: Path) -> CheckContext:
        options = {"command": clock_command("-7.5")}
        return check_context("drift", kit_release, record=record, options=options, deep=True)

    @pytest.fixture
    def not_applicable(
        self, record: Check, options: Mapping[str, Any], kit_release: Path
    ) -> CheckContext:
        return check_context("drift", kit_release, record=record, options=options, deep=False)


class TestDriftDns(CheckKit):
    kind: CheckKind = "drift"

    @pytest.fixture
    def record(self) -> Check:
        return drift_record("dns")

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        return {"names": ["localhost"]}

    @pytest.fixture
    def failing(self, record: Check, kit_release: Path) -> CheckContext:
        # .invalid never resolves (RFC 6761), and resolvers know it at once.
        options = {"names": ["fleetcore-kit.invalid"]}
        return check_context("drift", kit_release, record=record, options=options)

    @pytest.fixture
    def not_applicable(self, record: Check, kit_release: Path) -> CheckContext:
        return check_context("drift", kit_release, record=record, options={})


# -- the script activator --------------------------------------------------------------------------


class TestScriptActivator(ActivatorKit):
    """``activate.sh`` records its release's marker; ``deactivate.sh`` removes it."""

    @pytest.fixture
    def record(self) -> Activator:
        (record,) = script.fleetcore_register_activators()
        return record

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        return {"timeout": "30s"}

    @pytest.fixture
    def marker_file(self, tmp_path: Path) -> Path:
        return tmp_path / "kit-running"

    @pytest.fixture
    def make_release(self, tmp_path: Path, marker_file: Path) -> Callable[[str], Path]:
        def make(marker: str) -> Path:
            release = tmp_path / "kit-releases" / marker
            write(
                release,
                {
                    "activate.sh": f"#!/bin/sh\necho {marker} > {marker_file}\n",
                    "deactivate.sh": f"#!/bin/sh\nrm -f {marker_file}\n",
                },
                0o755,
            )
            return release

        return make

    @pytest.fixture
    def make_broken_release(self, tmp_path: Path) -> Callable[[str], Path]:
        def make(marker: str) -> Path:
            release = tmp_path / "kit-broken" / marker
            write(release, {"activate.sh": "#!/bin/sh\necho 'cannot start' >&2\nexit 1\n"}, 0o755)
            return release

        return make

    @pytest.fixture
    def running(self, marker_file: Path) -> Callable[[ActivationContext], str | None]:
        def running(ctx: ActivationContext) -> str | None:
            return marker_file.read_text().strip() if marker_file.exists() else None

        return running


# -- drift fixes --------------------------------------------------------------------------------


def fix_record(name: str) -> DriftFix:
    return named(drift.fleetcore_register_drift_fixes(), name)


class TestRestoreFiles(DriftFixKit):
    """A file edited by hand and one deleted, restored from a pristine copy."""

    @pytest.fixture
    def record(self) -> DriftFix:
        return fix_record("restore-files")

    @pytest.fixture
    def check(self) -> Check:
        return drift_record("files")

    @pytest.fixture
    def drifted(self, tmp_path: Path) -> CheckContext:
        files = {"app.conf": "v=1\n", "config/more.conf": "x\n"}
        release, pristine = tmp_path / "release", tmp_path / "pristine"
        write(release, files)
        write(pristine, files)
        trusted = Manifest.from_unpacked(COMMIT, DEVICE.role, measure_tree(pristine))
        write(release, {"app.conf": "v=1, edited by hand\n"})
        (release / "config/more.conf").unlink()
        return check_context(
            "drift", release, manifest=trusted, deep=True, repair=Repair(pristine_dir=pristine)
        )


class TestRepairFolders(DriftFixKit):
    @pytest.fixture
    def record(self) -> DriftFix:
        return fix_record("repair-folders")

    @pytest.fixture
    def check(self) -> Check:
        return drift_record("folders")

    @pytest.fixture
    def drifted(self, check: Check, tmp_path: Path) -> CheckContext:
        (tmp_path / "loose").mkdir(mode=0o777)
        (tmp_path / "loose").chmod(0o777)
        folders = {
            "folders": [
                {"path": str(tmp_path / "gone"), "mode": "0750"},
                {"path": str(tmp_path / "loose"), "mode": "0700"},
            ]
        }
        (tmp_path / "release").mkdir()
        ctx = check_context("drift", tmp_path / "release", record=check, options=folders)
        return attrs.evolve(ctx, check_options={"folders": ctx.options})


class TestSyncClock(DriftFixKit):
    """The clock check reads an offset the configured fix command resets."""

    @pytest.fixture
    def offset_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "offset"
        path.write_text("A,B,C,D,-7.5\n")
        return path

    @pytest.fixture
    def record(self) -> DriftFix:
        return fix_record("sync-clock")

    @pytest.fixture
    def options(self, offset_file: Path) -> Mapping[str, Any]:
        return {"command": ["sh", "-c", f"echo A,B,C,D,0.0 > {offset_file}"]}

    @pytest.fixture
    def check(self) -> Check:
        return drift_record("clock")

    @pytest.fixture
    def drifted(self, check: Check, offset_file: Path, tmp_path: Path) -> CheckContext:
        (tmp_path / "release").mkdir()
        options = {"command": ["cat", str(offset_file)]}
        return check_context(
            "drift", tmp_path / "release", record=check, options=options, deep=True
        )


@pytest.mark.parametrize("name", ["free-disk", "restart-network"])
def test_the_other_fixes_are_well_formed(name: str) -> None:
    # Whether they hold depends on the machine's disk and network: the
    # records alone are checked here, their work in test_script_checks.
    check_drift_fix_record(fix_record(name))


def test_every_fix_of_the_package_is_covered() -> None:
    kits = {"restore-files", "repair-folders", "sync-clock", "free-disk", "restart-network"}
    assert {r.name for r in drift.fleetcore_register_drift_fixes()} == kits
