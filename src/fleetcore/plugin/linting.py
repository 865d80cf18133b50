"""The records and values of lint plugins (``fleetcore_register_linters``).

A linter looks at a fleet repository checkout, before any device sees it, and
reports :class:`Problem` values: a file, a line, where in the file (a key
path, a rule) and what is wrong. ``fleetcore lint`` runs every linter, each
isolated, and prints one line per problem. The tutorial is
:mod:`fleetcore.lint.interface`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from attrs import field, frozen

Severity = Literal["error", "warning"]


def _name(_inst: object, _attr: object, value: str) -> None:
    if not value or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError(f"linter names are words like 'compose', got {value!r}")


def _line(_inst: object, _attr: object, value: int) -> None:
    if value < 1:
        raise ValueError(f"lines count from 1, got {value}")


@frozen(kw_only=True)
class Problem:
    """One problem in one file of the fleet repository.

    ``path`` is relative to the repository root, with ``/`` separators;
    ``line`` counts from 1 (1 when the problem is the whole file). ``where``
    says where inside the file, as precisely as the linter knows (a key path
    like ``services.web.ports``, a ShellCheck code like ``SC2086``), or is
    empty. Errors make ``fleetcore lint`` fail; warnings are shown only.

    ``fix``, when given, repairs the problem safely when the user asked for
    ``--fix`` and returns a short description of what it did.
    """

    path: str
    message: str
    line: int = field(default=1, validator=_line)
    where: str = ""
    severity: Severity = "error"
    code: str = ""
    """A stable identifier of the rule (``not-executable``, ``SC2086``,
    ``compose-schema``), for SARIF and for people who want to grep."""
    linter: str = ""
    """The linter that found it; filled in by the runner."""
    fix: Callable[[], str] | None = field(default=None, eq=False, repr=False)

    def __str__(self) -> str:
        where = f"{self.where}: " if self.where else ""
        level = "warning: " if self.severity == "warning" else ""
        return f"{self.path}:{self.line}: {where}{level}{self.message}"


@frozen(kw_only=True)
class LintContext:
    """What a linter gets: the repository and the files to look at."""

    repo: Path
    """The fleet repository's root folder."""
    files: tuple[str, ...]
    """The files to look at, relative to ``repo`` with ``/`` separators:
    what git tracks plus new files it does not ignore (every file when the
    folder is not a git checkout), only those of one role with ``--role``."""
    role: str | None = None
    """The role given with ``--role``, if any."""
    config_problems: Callable[[], list[str]] = field(default=list, repr=False)
    """fleetcore's own check of ``fleet.toml``, ``devices/`` and each
    ``role.toml`` with the installed plugins (what ``fleetcore config check
    --repo`` prints): lines ``FILE: message @ key``."""

    def path(self, name: str) -> Path:
        """The file ``name`` (one of :attr:`files`) on disk."""
        return self.repo / name

    def select(self, *patterns: str) -> list[str]:
        """The files whose name (``*.sh``) or whole path (``roles/*/role.toml``)
        matches one of ``patterns``."""
        return [
            f
            for f in self.files
            if any(
                fnmatch.fnmatchcase(f.rsplit("/", 1)[-1], p) or fnmatch.fnmatchcase(f, p)
                for p in patterns
            )
        ]


@frozen(kw_only=True)
class Linter:
    """A named linter. ``run(ctx)`` returns or yields :class:`Problem` values,
    nothing when all is well; raising is reported as a problem of its own.
    ``fleetcore lint --skip NAME`` leaves one out.
    """

    name: str = field(validator=_name)
    summary: str
    run: Callable[[LintContext], Iterable[Problem] | None]
