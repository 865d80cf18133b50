"""Running Docker Compose: which one is installed, and the command lines it gets.

Two generations of Compose are in use. Compose v2 is the ``docker compose``
CLI plugin, what most devices in the field have; Compose v1 is the older
``docker-compose`` Python program, still shipped by some distributions. For
what fleetcore does they agree on the global options (``-p``, ``-f``,
``--env-file``) and on ``up``, ``down``, ``pull`` and ``config``; they differ in

- how they are called (``docker compose`` or ``docker-compose``; a standalone
  ``docker-compose`` binary may also be v2), which is why the version is read
  from the program rather than guessed from its name;
- which options each version knows: ``--env-file`` needs v1.25 or later, and
  only v2.17 and later accept it more than once;
- the output of ``ps`` (a table in v1, JSON lines or an array in v2). This
  plugin never parses it: containers are observed through the Docker Engine by
  the ``com.docker.compose.*`` labels, which both versions set the same way
  (see :mod:`fleetcore_docker.observe`).

Everything that depends on the version lives in this module; the rest of the
plugin asks :func:`resolve` for a :class:`Compose` and :func:`command` for an
argument list.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from attrs import frozen

from fleetcore.activate.interface import ENV_FILE
from fleetcore.errors import FleetcoreError

# check_command and has_compose_file are re-exported: they were this module's.
from fleetcore_docker.basics import (  # noqa: F401
    AUTO,
    COMPOSE_FILES,
    check_command,
    find_compose_file,
    has_compose_file,
)

log = logging.getLogger(__name__)

ROLE_ENV_FILE = ".env"
"""The role's own env file, which Compose reads by default."""

AUTO_CANDIDATES: tuple[tuple[str, ...], ...] = (("docker", "compose"), ("docker-compose",))
"""What ``command = "auto"`` tries, in order: v2 first, as on most devices."""

PROBE_TIMEOUT = 30.0  # Compose v1 is a Python program: slow to start on a small board.
TAIL_LINES = 10
_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
_PROJECT_CHARS = re.compile(r"[^a-z0-9_-]")


@frozen
class Compose:
    """One installed Compose program: how to call it and which version it is."""

    argv: tuple[str, ...]
    """The program and its sub-command, e.g. ``("docker", "compose")``."""
    version: tuple[int, int, int]

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def env_file_option(self) -> bool:
        """Whether ``--env-file`` exists (Compose 1.25 and later)."""
        return self.version >= (1, 25, 0)

    @property
    def repeated_env_file_option(self) -> bool:
        """Whether ``--env-file`` may be given more than once (Compose 2.17 and later)."""
        return self.version >= (2, 17, 0)

    def __str__(self) -> str:
        return f"{' '.join(self.argv)} {'.'.join(map(str, self.version))}"


def parse_version(text: str) -> tuple[int, int, int] | None:
    """The version in ``docker compose version --short`` output (``2.20.2``,
    ``v2.24.6-desktop.1``, ``1.29.2``), or None."""
    match = _VERSION.search(text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def _probe(argv: tuple[str, ...]) -> tuple[Compose | None, str]:
    """Ask one candidate for its version: (compose, "") or (None, why not)."""
    try:
        proc = subprocess.run(
            [*argv, "version", "--short"],
            check=False,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if proc.returncode != 0:
        return None, tail(proc.stderr or proc.stdout, lines=2) or f"exit code {proc.returncode}"
    version = parse_version(proc.stdout)
    if version is None:
        return None, f"unrecognised version output {proc.stdout.strip()!r}"
    return Compose(argv, version), ""


def resolve(command: str = AUTO) -> Compose:
    """The Compose program to use for a ``command`` option.

    ``"auto"`` tries ``docker compose`` (v2) and then ``docker-compose``;
    anything else is the command line of one program (``"docker compose"``,
    ``"docker-compose"``, ``"/opt/bin/docker-compose"``). Cached per process
    (and per ``PATH`` and ``DOCKER_CONFIG``, which decide what is found):
    asking costs a program start, which Compose v1 makes expensive. Failures
    are not cached, so installing Compose fixes the next attempt.
    """
    return _resolve(command, os.environ.get("PATH", ""), os.environ.get("DOCKER_CONFIG", ""))


@functools.cache
def _resolve(command: str, _path: str, _docker_config: str) -> Compose:
    candidates = AUTO_CANDIDATES if command == AUTO else (tuple(shlex.split(command)),)
    reasons = []
    for argv in candidates:
        compose, why = _probe(argv)
        if compose is not None:
            log.debug("using Docker Compose %s", compose)
            return compose
        reasons.append(f"`{' '.join(argv)}`: {why}")
    raise FleetcoreError("Docker Compose is not available (" + "; ".join(reasons) + ")")


# -- files and command lines ------------------------------------------------------


def compose_files(release_dir: Path) -> tuple[Path, ...]:
    """The compose file and its override file (``docker-compose.override.yml``
    next to ``docker-compose.yml``), if any: ``-f`` turns off Compose's own
    lookup of the override, so it is passed explicitly."""
    main = find_compose_file(release_dir)
    if main is None:
        return ()
    stem = main.name.rsplit(".", 1)[0]
    for ext in ("yml", "yaml"):
        override = release_dir / f"{stem}.override.{ext}"
        if override.is_file():
            return main, override
    return (main,)


def require_compose_files(release_dir: Path) -> tuple[Path, ...]:
    files = compose_files(release_dir)
    if not files:
        raise FleetcoreError(
            f"{release_dir}: no compose file (looked for {', '.join(COMPOSE_FILES)})"
        )
    return files


def env_files(compose: Compose, release_dir: Path) -> tuple[Path, ...]:
    """The ``--env-file`` arguments for a release.

    The agent's env file is passed when this Compose knows the option. Giving
    ``--env-file`` stops Compose from reading the role's own ``.env``, so when
    the role has one both are passed where Compose allows it (v2.17+), and
    neither where it does not: the agent's values are in the environment of
    every Compose command anyway, and the environment wins over env files.
    """
    agent_file = release_dir / ENV_FILE
    if not agent_file.is_file() or not compose.env_file_option:
        return ()
    role_file = release_dir / ROLE_ENV_FILE
    if not role_file.is_file():
        return (agent_file,)
    if compose.repeated_env_file_option:
        return role_file, agent_file  # later files win
    return ()


def compose_project(name: str) -> str:
    """A project name as Compose stores it in its labels: lower case, letters,
    digits, ``-`` and ``_``, starting with a letter or digit."""
    return _PROJECT_CHARS.sub("", name.lower()).lstrip("-_")


def command(
    compose: Compose, release_dir: Path, *args: str, project: str | None = None
) -> list[str]:
    """The argument list of one Compose command for a release, e.g.
    ``command(compose, release, "up", "-d", project="fleetcore-web")``."""
    argv = list(compose.argv)
    if project:
        argv += ["-p", compose_project(project)]
    for path in require_compose_files(release_dir):
        argv += ["-f", str(path.absolute())]
    for path in env_files(compose, release_dir):
        argv += ["--env-file", str(path.absolute())]
    return [*argv, *args]


# -- running -------------------------------------------------------------------------


def redact(text: str, env: Mapping[str, str]) -> str:
    """Hide the secrets of ``env`` (every value but ``FLEETCORE_*``) in ``text``."""
    for key, value in env.items():
        if not key.startswith("FLEETCORE_") and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def tail(text: str, lines: int = TAIL_LINES) -> str:
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def run(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float, what: str
) -> subprocess.CompletedProcess[str]:
    """Run one Compose command with ``env`` added to the environment.

    Raises :class:`FleetcoreError` (naming the command as ``what``) when it
    cannot start or does not finish in ``timeout`` seconds; the caller judges
    the exit code, e.g. with :func:`check`.
    """
    log.debug("running %s", shlex.join(argv))  # never the environment: it holds secrets
    try:
        # A session of its own, so a timeout kills the whole group: the docker
        # CLI runs Compose v2 as a child process that would outlive it.
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        raise FleetcoreError(f"cannot run {what}: {exc}") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise FleetcoreError(f"{what} did not finish within {timeout:g}s and was killed") from None
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def error_output(proc: subprocess.CompletedProcess[str], env: Mapping[str, str]) -> str:
    """The last lines of what Compose said about a failure, secrets hidden."""
    return tail(redact(proc.stderr or proc.stdout, env))


def check(
    proc: subprocess.CompletedProcess[str], env: Mapping[str, str], *, what: str
) -> subprocess.CompletedProcess[str]:
    """Raise a :class:`FleetcoreError` with the end of Compose's error output
    when ``proc`` failed."""
    if proc.returncode != 0:
        raise FleetcoreError(
            f"{what} failed (exit code {proc.returncode}):\n{error_output(proc, env)}"
        )
    return proc


def services(
    compose: Compose, release_dir: Path, env: Mapping[str, str], timeout: float = 60.0
) -> tuple[str, ...]:
    """The services of a release's compose file, as Compose itself reads it
    (``config --services``: interpolation, profiles and overrides included)."""
    files = require_compose_files(release_dir)
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    return _services(compose, release_dir, key, tuple(sorted(env.items())), timeout)


@functools.lru_cache(maxsize=8)
def _services(
    compose: Compose,
    release_dir: Path,
    _files_key: tuple[tuple[str, int, int], ...],
    env_items: tuple[tuple[str, str], ...],
    timeout: float,
) -> tuple[str, ...]:
    # Releases are immutable once unpacked, and periodic health checks ask
    # again and again: one Compose start per release (and file change) is enough.
    env = dict(env_items)
    what = f"`{' '.join(compose.argv)} config --services`"
    argv = command(compose, release_dir, "config", "--services")
    proc = check(run(argv, cwd=release_dir, env=env, timeout=timeout, what=what), env, what=what)
    return tuple(line.strip() for line in proc.stdout.splitlines() if line.strip())
