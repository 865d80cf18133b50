"""Linter ``role-files``: the scripts the agent runs can run.

The agent runs ``validate.sh``, ``health.sh``, ``activate.sh`` and
``deactivate.sh`` of a role directly, so each must be executable and start
with ``#!``. A missing executable bit is the classic commit from a machine
that does not keep it; ``--fix`` sets it (``git add`` then records it).
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from fleetcore.lint.interface import LintContext, Linter, Problem, hookimpl

AGENT_SCRIPTS = ("validate.sh", "health.sh", "activate.sh", "deactivate.sh")


def _chmod(path: Path) -> str:
    mode = path.stat().st_mode
    path.chmod(
        mode
        | stat.S_IXUSR
        | (stat.S_IXGRP if mode & stat.S_IRGRP else 0)
        | (stat.S_IXOTH if mode & stat.S_IROTH else 0)
    )
    return f"made {path.name} executable"


def check_roles(ctx: LintContext) -> Iterator[Problem]:
    for name in ctx.select(*(f"roles/*/{s}" for s in AGENT_SCRIPTS)):
        if name.count("/") != 2:
            continue
        path = ctx.path(name)
        if not os.access(path, os.X_OK):
            yield Problem(
                path=name,
                where="mode",
                message="not executable: the agent runs it directly (chmod +x, or --fix)",
                code="not-executable",
                fix=functools.partial(_chmod, path),
            )
        with path.open("rb") as f:
            if f.read(2) != b"#!":
                yield Problem(
                    path=name,
                    message="no #! line: the agent runs it directly, say which shell",
                    code="no-shebang",
                )


@hookimpl
def fleetcore_register_linters() -> Iterator[Linter]:
    yield Linter(
        name="role-files",
        summary="The scripts the agent runs are executable, with a #! line",
        run=check_roles,
    )
