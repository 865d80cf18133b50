"""Drift: comparing the running device with its release, and repairing it.

A drift run selects the role's drift checks (``[drift]`` of ``role.toml``;
default: every check that applies), runs them light or deep, and, when asked
to fix, hands each group of findings to the drift fixes that claim their
``code``. Every fix is followed by the checks again: a finding a fix claimed
that is still there means the fix did not hold, and the device enters safe
mode (it keeps running what runs and stops attempting updates). Findings
nobody can fix are reported, not acted on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Literal

import attrs
from attrs import frozen

from fleetcore.agent.context import AgentContext
from fleetcore.agent.contexts import check_ctx
from fleetcore.agent.journal import Journal
from fleetcore.agent.releases import read_env, role_config_of
from fleetcore.agent.repair import RepairKit
from fleetcore.agent.state import State
from fleetcore.checks import runner
from fleetcore.errors import FetchError, FixUnavailable, FleetcoreError
from fleetcore.plugin.types import CheckContext, DriftFix, DriftReport, Finding
from fleetcore.release import Manifest, read_manifest

log = logging.getLogger("fleetcore.agent")

Verdict = Literal["clean", "fixed", "left"]


@frozen(kw_only=True)
class FixOutcome:
    fix: str
    codes: tuple[str, ...]
    message: str
    held: bool
    unavailable: bool = False
    """The fix could not act (nothing configured, or the network it needs is
    down): not a fix that failed."""


@frozen(kw_only=True)
class DriftResult:
    """What one drift run found and did."""

    deep: bool
    commit: str | None
    findings: tuple[Finding, ...]
    fixes: tuple[FixOutcome, ...] = ()
    left: tuple[Finding, ...] = ()

    @property
    def verdict(self) -> Verdict:
        if not self.findings:
            return "clean"
        return "left" if self.left else "fixed"

    @property
    def failed_fixes(self) -> tuple[FixOutcome, ...]:
        """Fixes that ran and did not hold (the way into safe mode)."""
        return tuple(f for f in self.fixes if not f.held and not f.unavailable)

    def to_json(self) -> dict[str, object]:
        def finding(f: Finding) -> dict[str, object]:
            return {
                "code": f.code,
                "subject": f.subject,
                "message": f.message,
                "expected": f.expected,
                "found": f.found,
            }

        return {
            "verdict": self.verdict,
            "deep": self.deep,
            "commit": self.commit,
            "findings": [finding(f) for f in self.findings],
            "fixes": [attrs.asdict(f) for f in self.fixes],
            "left": [finding(f) for f in self.left],
        }


def run_drift(
    ctx: AgentContext, *, deep: bool, fix: bool, only: tuple[str, ...] | None = None
) -> DriftResult:
    """Check the running release for drift and, with ``fix``, repair it.
    ``only`` limits the run to some checks (e.g. the clock after a partition)."""
    store = ctx.store
    release = store.current()
    state = store.load()
    commit = store.commit_of(release)
    if release is None:
        finding = _missing_release_finding(ctx)
        return DriftResult(deep=deep, commit=None, findings=(finding,), left=(finding,))
    role_cfg = role_config_of(store, release)
    kit = RepairKit(ctx, release, commit or "")
    base = check_ctx(
        ctx,
        "drift",
        store.release_dir(release),
        commit or "",
        _manifest_or_none(ctx, release),
        env=read_env(store, release),
        deep=deep,
        desired_commit=state.desired_commit,
        state_dir=store.root,
        repair=kit,
        activator=state.current_activator,
    )
    selection = role_cfg.drift if only is None else attrs.evolve(role_cfg.drift, checks=only)
    if only is not None:
        installed = ctx.pm.registry("drift check")
        selection = attrs.evolve(selection, checks=tuple(n for n in only if n in installed))
    selected = runner.select(ctx.pm, "drift", selection, base, source=f"{release}/role.toml")
    if state.unreachable_since is not None or state.network != "online":
        # Cut off: a check that needs the network would only report the outage
        # (and its fix, e.g. restarting the network, cannot bring the repo back).
        offline = [s.check.name for s in selected if s.check.network]
        if offline:
            log.info("skipped while disconnected (they need the network): %s", ", ".join(offline))
        selected = [s for s in selected if not s.check.network]
    base = attrs.evolve(base, check_options={s.check.name: s.options for s in selected})
    try:
        findings = _findings(runner.run(selected, base))
        if not findings or not fix:
            return DriftResult(deep=deep, commit=commit, findings=findings, left=findings)
        outcomes = _apply_fixes(ctx, base, findings)
        remaining = _findings(runner.run(selected, base))
        held = []
        for outcome in outcomes:
            still = [f for f in remaining if f.code in outcome.codes]
            held.append(attrs.evolve(outcome, held=outcome.held and not still))
        return DriftResult(
            deep=deep, commit=commit, findings=findings, fixes=tuple(held), left=remaining
        )
    finally:
        kit.close()


def _findings(outcomes: Sequence[runner.CheckOutcome]) -> tuple[Finding, ...]:
    out = []
    for outcome in outcomes:
        for finding in outcome.findings:
            subject = finding.subject or outcome.name
            out.append(
                attrs.evolve(
                    finding, subject=subject, code=finding.code or f"{outcome.name}-failed"
                )
            )
    return tuple(out)


def _apply_fixes(
    ctx: AgentContext, base: CheckContext, findings: Sequence[Finding]
) -> list[FixOutcome]:
    registry = ctx.pm.registry("drift fix")
    outcomes = []
    claimed: set[int] = set()
    for record in registry:
        fix: DriftFix = record
        mine = tuple(f for i, f in enumerate(findings) if f.code in fix.fixes and i not in claimed)
        if not mine:
            continue
        claimed.update(i for i, f in enumerate(findings) if f in mine)
        codes = tuple(sorted({f.code for f in mine}))
        try:
            options = ctx.pm.options(
                fix,
                ctx.config.drift.fixes.get(fix.name),
                where=f"drift.fixes.{fix.name}",
                source=ctx.config_source,
            )
            message = fix.run(attrs.evolve(base, options=options), mine)
            outcomes.append(FixOutcome(fix=fix.name, codes=codes, message=message, held=True))
            log.info("drift fix %s: %s", fix.name, message)
        except (FixUnavailable, FetchError) as exc:
            # Nothing to run here, or the network it needs is down (a fresh copy
            # of the release): the drift stays reported, and the next run tries
            # again. Not a fix that did not hold, so no safe mode over an outage.
            outcomes.append(
                FixOutcome(
                    fix=fix.name, codes=codes, message=str(exc), held=False, unavailable=True
                )
            )
            log.warning("drift fix %s could not run: %s; the drift stays reported", fix.name, exc)
        except Exception as exc:
            text = str(exc) if isinstance(exc, FleetcoreError) else f"{type(exc).__name__}: {exc}"
            outcomes.append(FixOutcome(fix=fix.name, codes=codes, message=text, held=False))
            log.error("drift fix %s failed: %s", fix.name, text)
    return outcomes


def _manifest_or_none(ctx: AgentContext, release: str) -> Manifest | None:
    try:
        return read_manifest(ctx.store.manifest_file(release))
    except (FleetcoreError, OSError, ValueError):
        return None


def _missing_release_finding(ctx: AgentContext) -> Finding:
    link = ctx.store.current_link
    try:
        target = os.readlink(link)
    except OSError:
        return Finding(message="no release is installed", subject="current", code="release-missing")
    return Finding(
        message="the current link points to a release that does not exist",
        subject="current",
        code="release-missing",
        expected="a release folder",
        found=target,
    )


def report(ctx: AgentContext, result: DriftResult) -> DriftReport:
    return DriftReport(
        device=ctx.device,
        commit=result.commit,
        findings=result.findings,
        fixed=tuple(f.fix for f in result.fixes if f.held),
        left=result.left,
    )


# -- follow-up -------------------------------------------------------------------


def follow_up(ctx: AgentContext, journal: Journal, state: State, result: DriftResult) -> State:
    """Record a drift run: its stamp and verdict in the state, a history entry
    and the ``fleetcore_drift_found`` hook when it found something, and safe
    mode when a fix did not hold."""
    summary = describe_drift(result)
    state = journal.drift_checked(
        state, result.verdict, summary, deep=result.deep, now=ctx.clock.now()
    )
    if not result.findings:
        return state
    log.warning("drift (%s): %s", result.verdict, summary)
    journal.record(
        result.commit,
        result.commit,
        "success" if result.verdict == "fixed" else "failed",
        0.0,
        summary,
        event="drift",
    )
    ctx.pm.notify("fleetcore_drift_found", report=report(ctx, result))
    failed = result.failed_fixes
    if failed and state.mode != "safe_mode":
        reasons = "; ".join(f"{f.fix}: {f.message}" for f in failed)
        state = journal.set_mode(state, "safe_mode", f"self-heal failed: {reasons}")
    return state


def describe_drift(result: DriftResult) -> str:
    """One line: what drifted, and what the fixes did."""
    if not result.findings:
        return "no drift"
    found = "; ".join(str(f) for f in result.findings[:5])
    more = f" (+{len(result.findings) - 5} more)" if len(result.findings) > 5 else ""
    fixes = "; ".join(
        f"{f.fix} {'held' if f.held else 'unavailable' if f.unavailable else 'failed'}: {f.message}"
        for f in result.fixes
    )
    return f"{found}{more}" + (f" | fixes: {fixes}" if fixes else "")


__all__ = [
    "DriftResult",
    "FixOutcome",
    "RepairKit",
    "describe_drift",
    "follow_up",
    "report",
    "run_drift",
]
