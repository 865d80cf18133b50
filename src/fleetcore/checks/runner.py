"""One runner for every kind of check.

It selects checks for a role (explicit names, or every default check that
applies), structures each one's options, and runs each in isolation: a check
that raises is a failed finding naming the exception, never an abort.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from attrs import frozen

from fleetcore.config.role import CheckSelection
from fleetcore.errors import ConfigError, UnknownPluginError
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import Check, CheckContext, CheckKind, Finding


@frozen(kw_only=True)
class CheckOutcome:
    name: str
    kind: CheckKind
    findings: tuple[Finding, ...]
    duration: float
    crashed: bool = False

    @property
    def passed(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        if self.passed:
            return f"{self.name}: ok"
        return f"{self.name}: " + "; ".join(str(f) for f in self.findings)


@frozen(kw_only=True)
class Selected:
    check: Check
    options: Any


def select(
    pm: PluginManager,
    kind: CheckKind,
    selection: CheckSelection,
    base: CheckContext,
    *,
    source: str,
) -> list[Selected]:
    """The checks of ``kind`` to run for a role, with their options.

    Naming an unknown check (in ``checks``, ``skip`` or an options table) is a
    configuration error that lists the installed checks.
    """
    registry = pm.registry(f"{kind} check")
    for name in (*(selection.checks or ()), *selection.skip, *selection.options):
        registry.get(name, where=f"{kind}.{name}", source=source)
    chosen: list[Selected] = []
    skip = set(selection.skip)
    candidates: Iterable[str] = (
        selection.checks if selection.checks is not None else registry.names()
    )
    for name in candidates:
        if name in skip:
            continue
        check = registry.get(name, where=f"{kind}.checks", source=source)
        automatic = selection.checks is None and name not in selection.options
        if automatic and not check.default:
            continue  # opt-in checks run only when a role names them
        if automatic:
            # A default check that needs options nobody gave has nothing to look at.
            try:
                options = pm.options(check, None, where=f"{kind}.{name}", source=source)
            except ConfigError:
                continue
            if check.applies is not None and not _applies(
                check, attrs.evolve(base, options=options)
            ):
                continue
        else:
            options = pm.options(
                check, selection.options.get(name), where=f"{kind}.{name}", source=source
            )
        chosen.append(Selected(check=check, options=options))
    return chosen


def _applies(check: Check, ctx: CheckContext) -> bool:
    try:
        return bool(check.applies(ctx)) if check.applies else True
    except Exception:
        return True  # let run() report the problem rather than silently skip


def run(selected: Sequence[Selected], base: CheckContext) -> list[CheckOutcome]:
    outcomes = []
    for item in selected:
        ctx = attrs.evolve(base, options=item.options)
        started = time.monotonic()
        crashed = False
        try:
            result = item.check.run(ctx)
            findings = tuple(result) if result is not None else ()
        except Exception as exc:
            crashed = True
            findings = (
                Finding(
                    message=f"check crashed: {type(exc).__name__}: {exc}",
                    subject=item.check.name,
                    code="check-crashed",
                ),
            )
        outcomes.append(
            CheckOutcome(
                name=item.check.name,
                kind=base.kind,
                findings=findings,
                duration=time.monotonic() - started,
                crashed=crashed,
            )
        )
    return outcomes


def failures(outcomes: Iterable[CheckOutcome]) -> list[CheckOutcome]:
    return [o for o in outcomes if not o.passed]


def describe_failures(outcomes: Iterable[CheckOutcome]) -> str:
    return "; ".join(o.summary() for o in failures(outcomes))


__all__ = [
    "CheckOutcome",
    "Selected",
    "UnknownPluginError",
    "describe_failures",
    "failures",
    "run",
    "select",
]
