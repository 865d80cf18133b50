"""The conformance kit of drift fixes (:class:`~fleetcore.plugin.types.DriftFix`).

Subclass :class:`DriftFixKit` and define the fixtures ``record``, ``check``
(the drift check whose findings the fix repairs) and ``drifted``: a
:class:`~fleetcore.plugin.types.CheckContext` (see
:func:`fleetcore.testing.conformance.check_context`) in which ``check``
finds drift that the fix claims. A fix that needs the agent (a pristine
copy of the release, a restart of the services) gets a :class:`Repair` as
``ctx.repair``::

    class TestRestoreFiles(DriftFixKit):
        @pytest.fixture
        def record(self):
            return next(r for r in plugin.fleetcore_register_drift_fixes()
                        if r.name == "restore-files")

        @pytest.fixture
        def check(self):
            return next(r for r in plugin.fleetcore_register_drift_checks()
                        if r.name == "files")

        @pytest.fixture
        def drifted(self, tmp_path):
            ...  # a release, its pristine copy, one file changed by hand
            return check_context("drift", release, manifest=manifest, deep=True,
                                 repair=Repair(pristine_dir=copy))

It checks that the record is well formed (a non-empty set of finding codes),
that the check does find drift the fix claims and that checking alone (a
dry run) changes nothing, the same drift being found again; and that after the
fix ran with the findings it claims (as the agent runs it) the check no
longer finds them: the fix held.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from fleetcore.plugin.types import Check, CheckContext, DriftFix, Finding
from fleetcore.testing.conformance import changes_between, fail, missing_fixture, tree_state
from fleetcore.testing.conformance.checks import run_check
from fleetcore.testing.contracts import check_summary, structure_options

__all__ = ["DriftFixKit", "Repair", "check_drift_fix_record"]


@attrs.define(kw_only=True)
class Repair:
    """What the agent offers drift fixes as ``ctx.repair``, for tests:
    ``pristine()`` a verified copy of the running release, ``restart()`` its
    services started again, ``clean()`` old releases removed."""

    pristine_dir: Path | None = None
    restart_with: Callable[[], str] | None = None
    clean_with: Callable[[], list[str]] | None = None
    calls: list[str] = attrs.Factory(list)

    def pristine(self) -> Path:
        self.calls.append("pristine")
        if self.pristine_dir is None:
            fail("this test's Repair has no pristine_dir")
        return self.pristine_dir

    def restart(self) -> str:
        self.calls.append("restart")
        if self.restart_with is None:
            fail("this test's Repair has no restart_with")
        return self.restart_with()

    def clean(self) -> list[str]:
        self.calls.append("clean")
        return self.clean_with() if self.clean_with is not None else []


def check_drift_fix_record(record: DriftFix, example: Mapping[str, Any] | Any = None) -> Any:
    """Check the shape of a :class:`~fleetcore.plugin.types.DriftFix` record;
    return its options structured from ``example`` (default: an empty table)."""
    if not isinstance(record, DriftFix):
        fail(f"expected a DriftFix record, got {record!r}")
    check_summary(record)
    if not record.fixes:
        fail(f"{record.name}: fixes must name the finding codes this fix repairs")
    for code in record.fixes:
        if not isinstance(code, str) or not code.strip():
            fail(f"{record.name}: finding codes are non-empty strings, got {code!r}")
    if not callable(record.run):
        fail(f"{record.name}: run must be callable")
    return structure_options(record, {} if example is None else example)


def _key(finding: Finding) -> tuple[str, str]:
    return (finding.code, finding.subject)


class DriftFixKit:
    """Conformance tests for a drift fix; see the module's documentation."""

    # -- what a subclass supplies --------------------------------------------------------

    @pytest.fixture
    def record(self) -> DriftFix:
        missing_fixture("DriftFixKit", "record", "the DriftFix record your plugin registers")

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        """The fix's options (``[drift.fixes.NAME]`` in ``agent.toml``)."""
        return {}

    @pytest.fixture
    def check(self) -> Check:
        missing_fixture("DriftFixKit", "check", "the drift check whose findings the fix repairs")

    @pytest.fixture
    def drifted(self) -> CheckContext:
        missing_fixture(
            "DriftFixKit", "drifted", "a CheckContext in which `check` finds drift the fix claims"
        )

    # -- the tests ------------------------------------------------------------------------

    def test_record(self, record: DriftFix, options: Mapping[str, Any]) -> None:
        check_drift_fix_record(record, options)

    def test_checking_finds_the_drift_and_changes_nothing(
        self, record: DriftFix, check: Check, drifted: CheckContext
    ) -> None:
        before = tree_state(drifted.release_dir)
        first = sorted(map(_key, self._claimed(record, check, drifted)))
        second = sorted(map(_key, self._claimed(record, check, drifted)))
        changed = changes_between(before, tree_state(drifted.release_dir))
        if changed:
            fail(f"{check.name}: checking (a dry run) changed the release: {', '.join(changed)}")
        if first != second:
            fail(f"{check.name}: checking twice found {first}, then {second}")

    def test_the_fix_holds(
        self,
        record: DriftFix,
        options: Mapping[str, Any],
        check: Check,
        drifted: CheckContext,
    ) -> None:
        claimed = self._claimed(record, check, drifted)
        ctx = attrs.evolve(drifted, options=structure_options(record, options))
        message = record.run(ctx, tuple(claimed))
        if not isinstance(message, str) or not message.strip():
            fail(f"{record.name}: run() must say what it did, got {message!r}")
        left = [
            f
            for f in run_check(check, drifted)
            if f.code in record.fixes and _key(f) in set(map(_key, claimed))
        ]
        if left:
            fail(
                f"{record.name}: the fix ({message}) did not hold: {check.name} still finds "
                + "; ".join(str(f) for f in left)
            )

    @staticmethod
    def _claimed(record: DriftFix, check: Check, drifted: CheckContext) -> list[Finding]:
        findings = run_check(check, drifted)
        claimed = [f for f in findings if f.code in record.fixes]
        if not claimed:
            fail(
                f"{record.name}: in the drifted scenario {check.name} found "
                f"{[str(f) for f in findings] or 'nothing'}, none with a code of "
                f"{sorted(record.fixes)}"
            )
        return claimed
