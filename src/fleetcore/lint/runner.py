"""Running the installed linters over a fleet repository, each isolated."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs
from attrs import frozen

from fleetcore.errors import FleetcoreError
from fleetcore.plugin.linting import LintContext, Linter, Problem
from fleetcore.plugin.manager import PluginManager

log = logging.getLogger(__name__)


class UsageError(FleetcoreError):
    """``--role`` or ``--skip`` names something that is not there."""

    exit_code = 2


# Never walked when the folder is not a git checkout: tools' caches, not fleet files.
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".tox"}


@frozen(kw_only=True)
class LintResult:
    problems: tuple[Problem, ...]
    files: int
    linters: tuple[str, ...]
    fixed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def repo_files(repo: Path) -> list[str]:
    """What git tracks plus new files it does not ignore; every file (but
    tools' caches) when ``repo`` is not a git checkout."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
    )
    inside = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--show-prefix"], capture_output=True, text=True
    )
    if listed.returncode == 0 and inside.returncode == 0 and not inside.stdout.strip():
        tracked = {n for n in listed.stdout.decode().split("\0") if n}
        # A file deleted but not yet staged is still in the index.
        return sorted(n for n in tracked if (repo / n).is_file())
    found: list[str] = []
    for root, dirs, names in os.walk(repo):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        rel = Path(root).relative_to(repo)
        found += [(rel / n).as_posix() for n in names if (Path(root) / n).is_file()]
    return sorted(found)


def context(
    repo: Path, *, role: str | None, config_problems: Callable[[], list[str]]
) -> LintContext:
    files = repo_files(repo)
    if role is not None:
        prefix = f"roles/{role}/"
        if not (repo / "roles" / role).is_dir():
            roles = sorted(p.name for p in (repo / "roles").glob("*") if p.is_dir())
            raise UsageError(
                f"no role {role!r} in {repo}/roles; roles: {', '.join(roles) or 'none'}"
            )
        files = [f for f in files if f.startswith(prefix)]
    return LintContext(repo=repo, files=tuple(files), role=role, config_problems=config_problems)


def run_linters(
    pm: PluginManager,
    ctx: LintContext,
    *,
    skip: Iterable[str] = (),
    fix: bool = False,
) -> LintResult:
    """Every installed linter but ``skip``; with ``fix``, the problems'
    fixes, then every linter again so what is left is what the user sees."""
    registry = pm.linters()
    skip = set(skip)
    for name in sorted(skip - set(registry.names())):
        raise UsageError(
            f"unknown linter {name!r} in --skip; installed: {', '.join(registry.names()) or 'none'}"
        )
    if not len(registry):
        # A CI job that lints with nothing installed must not pass quietly.
        raise UsageError("no linter is installed: pip install fleetcore-lint (or fleetcore[lint])")
    linters = [r for r in registry if r.name not in skip]
    problems = _run_all(linters, ctx)
    fixed: list[str] = []
    if fix:
        for problem in problems:
            if problem.fix is None:
                continue
            try:
                fixed.append(f"{problem.path}:{problem.line}: {problem.fix()}")
            except Exception as exc:
                log.warning("fixing %s:%s failed: %s", problem.path, problem.line, exc)
        if fixed:
            problems = _run_all(linters, ctx)
    return LintResult(
        problems=tuple(problems),
        files=len(ctx.files),
        linters=tuple(sorted(r.name for r in linters)),
        fixed=tuple(fixed),
    )


def _run_all(linters: list[Linter], ctx: LintContext) -> list[Problem]:
    problems: list[Problem] = []
    for linter in linters:
        problems += _run_one(linter, ctx)
    if ctx.role is not None:
        prefix = f"roles/{ctx.role}/"
        problems = [p for p in problems if p.path.startswith(prefix)]
    # One problem reported twice (two linters, one cause) is shown once.
    unique = {(p.path, p.line, p.where, p.message): p for p in problems}
    return sorted(unique.values(), key=lambda p: (p.path, p.line, p.where, p.message))


def _run_one(linter: Linter, ctx: LintContext) -> list[Problem]:
    # A broken linter is a problem to report, never the end of the run.
    try:
        found = list(linter.run(ctx) or ())
    except Exception as exc:
        log.debug("linter %s raised", linter.name, exc_info=True)
        return [
            Problem(
                path=".",
                where=linter.name,
                message=f"linter {linter.name} raised {exc!r}",
                code="linter-error",
                linter=linter.name,
            )
        ]
    return [attrs.evolve(p, linter=linter.name) for p in found]
