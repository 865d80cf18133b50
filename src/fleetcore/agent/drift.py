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

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import attrs
from attrs import frozen

from fleetcore.checks import runner
from fleetcore.errors import FleetcoreError, VerifyError
from fleetcore.plugin.types import CheckContext, DriftFix, DriftReport, Finding
from fleetcore.release import Manifest, measure_tree, read_manifest, unpack

if TYPE_CHECKING:
    from fleetcore.agent.update import Agent

log = logging.getLogger("fleetcore.agent")

Verdict = Literal["clean", "fixed", "left"]


@frozen(kw_only=True)
class FixOutcome:
    fix: str
    codes: tuple[str, ...]
    message: str
    held: bool


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
        return tuple(f for f in self.fixes if not f.held)

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


class RepairKit:
    """What drift fixes may ask of the agent, for the running release."""

    def __init__(self, agent: Agent, release: str, commit: str) -> None:
        self.agent = agent
        self.release = release
        self.commit = commit
        self._pristine: Path | None = None

    @property
    def release_dir(self) -> Path:
        return self.agent.store.release_dir(self.release)

    def manifest(self) -> Manifest:
        return read_manifest(self.agent.store.manifest_file(self.release))

    def pristine(self) -> Path:
        """A fresh, verified copy of the running release, fetched again from
        the source (the fetcher's cache makes that local for git)."""
        if self._pristine is not None:
            return self._pristine
        staging = self.agent.store.staging / "pristine"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "fetch").mkdir(parents=True)
        fetched = self.agent.source().fetch(self.commit, self.agent.device.role, staging / "fetch")
        unpacked = unpack(
            fetched.archive,
            staging / "tree",
            prefix=fetched.prefix,
            max_bytes=self.agent.config.disk.max_release_size.bytes,
            git_blobs=fetched.manifest.wants_git_blob,
        )
        problems = fetched.manifest.compare(unpacked)
        if problems:
            raise VerifyError(
                "the refetched release does not match its manifest: "
                + "; ".join(str(p) for p in problems)
            )
        self._pristine = staging / "tree"
        return self._pristine

    def restart(self) -> str:
        """Bring the running release's services up again through its activator."""
        name, activator = self.agent._activator(
            self.release_dir, self.agent._role_config_of(self.release)
        )
        activator.start(self.agent._activation_ctx(self.release, self.commit))
        return f"{name} activator started {self.release} again"

    def clean(self) -> list[str]:
        """Remove old releases, staging leftovers and fetch caches' garbage."""
        removed = self.agent._clean_releases()
        staging = self.agent.store.staging
        if staging.exists():
            for child in staging.iterdir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(f"staging/{child.name}")
        return removed

    def close(self) -> None:
        if self._pristine is not None:
            shutil.rmtree(self._pristine.parent, ignore_errors=True)


def snapshot(release_dir: Path) -> dict[str, list[int]]:
    """Size, modification time and mode of every file: the light baseline."""
    measured = measure_tree(release_dir, deep=False)
    return {path: [m.size, m.mtime_ns or 0, m.mode] for path, m in measured.files.items()}


def write_snapshot(path: Path, release_dir: Path) -> None:
    from fleetcore.files import atomic_write

    atomic_write(path, json.dumps(snapshot(release_dir), sort_keys=True).encode())


def run_drift(
    agent: Agent, *, deep: bool, fix: bool, only: tuple[str, ...] | None = None
) -> DriftResult:
    """Check the running release for drift and, with ``fix``, repair it.
    ``only`` limits the run to some checks (e.g. the clock after a partition)."""
    store = agent.store
    release = store.current()
    state = store.load()
    commit = store.commit_of(release)
    if release is None:
        finding = _missing_release_finding(agent)
        return DriftResult(deep=deep, commit=None, findings=(finding,), left=(finding,))
    role_cfg = agent._role_config_of(release)
    kit = RepairKit(agent, release, commit or "")
    base = agent._check_ctx(
        "drift",
        store.release_dir(release),
        commit or "",
        _manifest_or_none(agent, release),
        env=agent._read_env(release),
        deep=deep,
        desired_commit=state.desired_commit,
        state_dir=store.root,
        repair=kit,
        activator=state.current_activator,
    )
    selection = role_cfg.drift if only is None else attrs.evolve(role_cfg.drift, checks=only)
    if only is not None:
        installed = agent.pm.registry("drift check")
        selection = attrs.evolve(selection, checks=tuple(n for n in only if n in installed))
    selected = runner.select(agent.pm, "drift", selection, base, source=f"{release}/role.toml")
    base = attrs.evolve(base, check_options={s.check.name: s.options for s in selected})
    try:
        findings = _findings(runner.run(selected, base))
        if not findings or not fix:
            return DriftResult(deep=deep, commit=commit, findings=findings, left=findings)
        outcomes = _apply_fixes(agent, base, findings)
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


def _apply_fixes(agent: Agent, base: CheckContext, findings: Sequence[Finding]) -> list[FixOutcome]:
    registry = agent.pm.registry("drift fix")
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
            options = agent.pm.options(
                fix,
                agent.config.drift.fixes.get(fix.name),
                where=f"drift.fixes.{fix.name}",
                source=agent.config_source,
            )
            message = fix.run(attrs.evolve(base, options=options), mine)
            outcomes.append(FixOutcome(fix=fix.name, codes=codes, message=message, held=True))
            log.info("drift fix %s: %s", fix.name, message)
        except Exception as exc:
            text = str(exc) if isinstance(exc, FleetcoreError) else f"{type(exc).__name__}: {exc}"
            outcomes.append(FixOutcome(fix=fix.name, codes=codes, message=text, held=False))
            log.error("drift fix %s failed: %s", fix.name, text)
    return outcomes


def _manifest_or_none(agent: Agent, release: str) -> Manifest | None:
    try:
        return read_manifest(agent.store.manifest_file(release))
    except (FleetcoreError, OSError, ValueError):
        return None


def _missing_release_finding(agent: Agent) -> Finding:
    link = agent.store.current_link
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


def report(agent: Agent, result: DriftResult) -> DriftReport:
    return DriftReport(
        device=agent.device,
        commit=result.commit,
        findings=result.findings,
        fixed=tuple(f.fix for f in result.fixes if f.held),
        left=result.left,
    )
