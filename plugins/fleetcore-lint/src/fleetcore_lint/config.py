"""Linter ``fleetcore-config``: fleetcore's own files, as ``config check --repo`` sees them.

fleetcore reports ``FILE: message @ key.path``; this linter turns each into a
problem at the line that key is on, found in the TOML text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from fleetcore.lint.interface import LintContext, Linter, Problem, hookimpl


def key_line(text: str, key: str) -> int:
    """The line (from 1) where the dotted ``key`` is set, else where its
    deepest enclosing table starts, else 1."""
    parts = [p for p in key.split(".") if p and not p.isdigit()]
    best, best_depth = 1, 0
    table: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        header = re.fullmatch(r"\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?", line)
        if header:
            table = [t.strip().strip("\"'") for t in header.group(1).split(".")]
            if parts[: len(table)] == table and len(table) >= best_depth:
                best, best_depth = number, len(table)
            continue
        found = re.match(r"([A-Za-z0-9_\-\"'. ]+?)\s*=", line)
        if found:
            name = [t.strip().strip("\"'") for t in found.group(1).split(".")]
            if parts[: len(table) + len(name)] == table + name:
                return number
    return best


def _problem(ctx: LintContext, line: str) -> Problem:
    source, _, message = line.partition(": ")
    where = ""
    if " @ " in message:
        message, _, where = message.rpartition(" @ ")
    path = Path(source)
    try:
        rel = path.resolve().relative_to(ctx.repo.resolve()).as_posix()
    except ValueError:
        rel = source
    number = 1
    if where and path.is_file():
        number = key_line(path.read_text(encoding="utf-8", errors="replace"), where)
    return Problem(path=rel, line=number, where=where, message=message, code="fleetcore-config")


def check_config(ctx: LintContext) -> Iterator[Problem]:
    for line in ctx.config_problems():
        yield _problem(ctx, line)


@hookimpl
def fleetcore_register_linters() -> Iterator[Linter]:
    yield Linter(
        name="fleetcore-config",
        summary="fleet.toml, devices/*.toml and role.toml as `config check --repo` sees them",
        run=check_config,
    )
