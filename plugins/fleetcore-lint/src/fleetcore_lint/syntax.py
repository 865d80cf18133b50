"""Linter ``syntax``: JSON, YAML, TOML and Python files parse, or say where they do not."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from collections.abc import Iterator

from fleetcore.lint.interface import LintContext, Linter, Problem, hookimpl
from fleetcore_lint.yamlfile import YamlError, load_all

_TOML_AT = re.compile(r"\s*\(at line (\d+), column \d+\)")


def _read(ctx: LintContext, name: str) -> str | Problem:
    try:
        return ctx.path(name).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return Problem(path=name, message=f"not UTF-8 text: {exc.reason}", code="not-utf8")


def check_syntax(ctx: LintContext) -> Iterator[Problem]:
    for name in ctx.select("*.json"):
        text = _read(ctx, name)
        if isinstance(text, Problem):
            yield text
            continue
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            yield Problem(
                path=name, line=exc.lineno, message=f"invalid JSON: {exc.msg}", code="json"
            )
    for name in ctx.select("*.yml", "*.yaml"):
        text = _read(ctx, name)
        if isinstance(text, Problem):
            yield text
            continue
        try:
            load_all(text)
        except YamlError as exc:
            yield Problem(
                path=name, line=exc.line, message=f"invalid YAML: {exc.message}", code="yaml"
            )
    for name in ctx.select("*.toml"):
        text = _read(ctx, name)
        if isinstance(text, Problem):
            yield text
            continue
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            found = _TOML_AT.search(str(exc))
            yield Problem(
                path=name,
                line=int(found.group(1)) if found else 1,
                message=f"invalid TOML: {_TOML_AT.sub('', str(exc))}",
                code="toml",
            )

    for name in ctx.select("*.py"):
        text = _read(ctx, name)
        if isinstance(text, Problem):
            yield text
            continue
        try:
            # Parsed, never run: a syntax error in a role's Python script.
            ast.parse(text, filename=name)
        except SyntaxError as exc:
            yield Problem(
                path=name,
                line=max(1, exc.lineno or 1),
                message=f"invalid Python: {exc.msg}",
                code="python",
            )


@hookimpl
def fleetcore_register_linters() -> Iterator[Linter]:
    yield Linter(name="syntax", summary="JSON, YAML, TOML and Python files parse", run=check_syntax)
