"""Linter ``compose``: compose files against the Compose specification, and Compose itself.

Three layers, each catching what the one before cannot:

- the Compose specification's JSON schema (``schemas/compose-spec.json``,
  vendored so that linting needs no network), at the line of the key;
- ``docker compose config --no-interpolate`` (or Compose v1's
  ``docker-compose``) when one is installed: references between services,
  merge rules, what the schema leaves open (``${VARS}`` are left alone: secrets
  providers set them on the device);
- images pinned to neither a tag nor a digest (warning): a device that pulls
  ``nginx`` gets whatever ``latest`` is that day.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from fleetcore.lint.interface import LintContext, Linter, Problem, hookimpl
from fleetcore_lint.yamlfile import YamlDoc, YamlError, load

COMPOSE_FILES = (
    "docker-compose.yml",
    "docker-compose.yaml",
    "compose.yml",
    "compose.yaml",
    "docker-compose.*.yml",
    "docker-compose.*.yaml",
    "compose.*.yml",
    "compose.*.yaml",
)
_LINE = re.compile(r"\bline (\d+)\b")


@cache
def _validator() -> Any:
    import jsonschema

    schema = json.loads((Path(__file__).parent / "schemas/compose-spec.json").read_text())
    return jsonschema.Draft202012Validator(schema)


@cache
def compose_argv() -> tuple[str, ...] | None:
    """The installed Compose: v2's plugin, else a ``docker-compose`` binary."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ("docker", "compose")
    found = shutil.which("docker-compose")
    return (found,) if found else None


def _dotted(path: Any) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _schema_problems(name: str, doc: YamlDoc) -> Iterator[Problem]:
    import jsonschema

    errors = [
        jsonschema.exceptions.best_match(e.context) if e.context else e
        for e in _validator().iter_errors(doc.data)
    ]
    paths = [tuple(e.absolute_path) for e in errors]
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        if error.validator in ("additionalProperties", "unevaluatedProperties"):
            # The schema lists a key as "unexpected" also when its value is
            # invalid; that value has an error of its own, at its own line.
            names = re.findall(r"'([^']*)'", error.message.rpartition("(")[2])
            for key in names:
                if any(p[: len(path) + 1] == (*path, key) for p in paths):
                    continue
                yield Problem(
                    path=name,
                    line=doc.line([*path, key]),
                    where=_dotted([*path, key]),
                    message=f"unknown key {key!r}",
                    code="compose-schema",
                )
            continue
        if "environment" in path or "secrets" in path:
            # The value may be a secret: name the rule, never the value.
            message = f"not allowed here ({error.validator})"
        else:
            message = error.message
        if len(message) > 200:
            message = message[:197] + "..."
        yield Problem(
            path=name,
            line=doc.line(path),
            where=_dotted(path),
            message=message,
            code="compose-schema",
        )


def _unpinned(name: str, doc: YamlDoc) -> Iterator[Problem]:
    services = doc.data.get("services") if isinstance(doc.data, dict) else None
    for service, spec in (services or {}).items():
        image = spec.get("image") if isinstance(spec, dict) else None
        if not isinstance(image, str) or "${" in image:
            continue
        if "@sha256:" in image:
            continue
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if not tag or tag == "latest":
            yield Problem(
                path=name,
                line=doc.line(["services", service, "image"]),
                where=f"services.{service}.image",
                message=f"image {image!r} is not pinned to a tag or digest; devices would "
                "each pull whatever it is that day",
                severity="warning",
                code="compose-unpinned-image",
            )


def _compose_config(ctx: LintContext, name: str) -> Iterator[Problem]:
    argv = compose_argv()
    if argv is None:
        return
    path = ctx.path(name)
    # No interpolation: ${VARS} come from secrets providers at deploy time
    # (the activator's --env-file), and a required one is not an error here.
    proc = subprocess.run(
        [*argv, "-f", path.name, "config", "-q", "--no-interpolate"],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode == 0:
        return
    for raw in (proc.stderr or proc.stdout).strip().splitlines()[-3:]:
        text = raw.replace(str(path), name).strip()
        if not text or text.lower().startswith("warn"):
            continue
        found = _LINE.search(text)
        yield Problem(
            path=name,
            line=int(found.group(1)) if found else 1,
            where="compose config",
            message=text,
            code="compose-config",
        )


def check_compose(ctx: LintContext) -> Iterator[Problem]:
    for name in ctx.select(*COMPOSE_FILES):
        try:
            doc = load(ctx.path(name).read_text(encoding="utf-8"))
        except (YamlError, UnicodeDecodeError):
            continue  # the syntax linter reports it, at its line
        schema = list(_schema_problems(name, doc))
        yield from schema
        if isinstance(doc.data, dict):
            yield from _unpinned(name, doc)
        if not schema:
            yield from _compose_config(ctx, name)


@hookimpl
def fleetcore_register_linters() -> Iterator[Linter]:
    yield Linter(
        name="compose",
        summary="Compose files: the specification's schema, `compose config`, pinned images",
        run=check_compose,
    )
