"""Fleet repositories made with real git, for tests and demos."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from collections.abc import Mapping
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "fleetcore tests",
    "GIT_AUTHOR_EMAIL": "tests@fleetcore.invalid",
    "GIT_COMMITTER_NAME": "fleetcore tests",
    "GIT_COMMITTER_EMAIL": "tests@fleetcore.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class FleetRepo:
    """A git repository laid out as a fleet repo, changed one commit at a time.

    >>> repo = FleetRepo.create(tmp_path / "fleet")
    >>> first = repo.commit({"roles/web/activate.sh": "#!/bin/sh\\necho up\\n"}, "first")
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._commits = 0

    @classmethod
    def create(cls, path: Path, branch: str = "main") -> FleetRepo:
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path)
        repo.git("init", "-q", "-b", branch)
        # Served by `git daemon` in tests: allow remote `git archive` of any
        # commit, which upload-archive refuses by default.
        repo.git("config", "uploadArchive.allowUnreachable", "true")
        return repo

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        env = {**os.environ, **GIT_ENV, **(env or {})}
        out = subprocess.run(
            ["git", "-C", str(self.path), *args],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        return out.stdout.strip()

    def write(
        self, files: Mapping[str, str | bytes | None], *, executable: bool | None = None
    ) -> None:
        for name, content in files.items():
            target = self.path / name
            if content is None:
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(textwrap.dedent(content) if content.startswith("\n") else content)
            if executable or (executable is None and name.endswith(".sh")):
                target.chmod(0o755)

    def commit(
        self,
        files: Mapping[str, str | bytes | None] | None = None,
        message: str = "change",
        *,
        branch: str | None = None,
    ) -> str:
        """Write ``files`` (None deletes), commit everything, return the commit id."""
        if branch is not None:
            self.checkout(branch)
        if files:
            self.write(files)
        self.git("add", "-A")
        # Fixed dates: the same history gives the same commit ids on every run,
        # so anything derived from them (rollout buckets) is reproducible.
        self._commits += 1
        stamp = f"@{1767225600 + 60 * self._commits} +0000"
        self.git(
            "-c",
            "core.hooksPath=/dev/null",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
            env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
        )
        return self.head()

    def checkout(self, branch: str) -> None:
        existing = self.git("branch", "--list", branch)
        if existing:
            self.git("checkout", "-q", branch)
        else:
            self.git("checkout", "-q", "-b", branch)

    def head(self, ref: str = "HEAD") -> str:
        return self.git("rev-parse", ref)

    @property
    def url(self) -> str:
        return f"file://{self.path}"


def script_role(
    marker: str = "v1",
    *,
    health: str | None = "exit 0",
    validate: str | None = None,
    extra: Mapping[str, str] | None = None,
    role: str = "web",
    settle: str = "0s",
) -> dict[str, str]:
    """Files of a role run by the script activator, for tests without Docker.

    ``activate.sh`` records the release it started in ``$FLEETCORE_TEST_OUT``
    (a file the test reads) so tests can see which release runs.
    """
    files = {
        f"roles/{role}/activate.sh": textwrap.dedent(f"""\
            #!/bin/sh
            set -e
            echo "{marker} $FLEETCORE_COMMIT" > "${{FLEETCORE_TEST_OUT:-/dev/null}}"
            """),
        f"roles/{role}/config/app.conf": f"marker={marker}\n",
        f"roles/{role}/role.toml": f'[health]\nsettle = "{settle}"\n',
    }
    if health is not None:
        files[f"roles/{role}/health.sh"] = f"#!/bin/sh\n{health}\n"
    if validate is not None:
        files[f"roles/{role}/validate.sh"] = f"#!/bin/sh\n{validate}\n"
    files.update(extra or {})
    return files


class GitDaemon:
    """A real ``git daemon`` serving every repository under ``base``."""

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from fleetcore.testing.services import wait_for_port

        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=upload-archive",
                f"--base-path={self.base}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for_port(self.port):
            self.stop()
            raise RuntimeError(f"git daemon did not listen on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def url(self, repo: FleetRepo) -> str:
        return f"git://127.0.0.1:{self.port}/{repo.path.relative_to(self.base)}"
