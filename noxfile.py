"""nox sessions: tests, lint, demo and benchmarks (`nox -l` lists them)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "core", "lint"]
PLUGINS = sorted(str(p) for p in Path("plugins").glob("fleetcore-*"))


def install_all(session: nox.Session) -> None:
    session.install(
        "-e",
        ".[dev,server,postgres]",
        *[arg for p in PLUGINS for arg in ("-e", p)],
        "-e",
        "tests/_plugin",
    )


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite against real git and a real Docker Engine."""
    install_all(session)
    session.run(
        "pytest", "-n", "3", "--dist", "loadgroup",
        "--cov", "--cov-report=term", "--cov-fail-under=87", *session.posargs,
    )  # fmt: skip


@nox.session
def core(session: nox.Session) -> None:
    """The core alone: lists no plugin and names a missing one."""
    session.install("-e", ".", "pytest")
    session.run("pytest", "-c", "tests/core_only/pytest.ini", "tests/core_only")


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, the import-layer contracts and mypy."""
    install_all(session)
    session.run("ruff", "check", "src", "plugins", "tests", "benchmarks")
    session.run("ruff", "format", "--check", "src", "plugins", "tests", "benchmarks")
    session.run("lint-imports")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """Converge the example fleet with a local agent."""
    install_all(session)
    session.run("fleetcore", "demo")


@nox.session
def benchmarks(session: nox.Session) -> None:
    """The benchmarks of benchmarks/ (figures printed side by side)."""
    install_all(session)
    session.run("python", "benchmarks/run.py", *session.posargs)
