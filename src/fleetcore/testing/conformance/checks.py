"""The conformance kit of checks (:class:`~fleetcore.plugin.types.Check`):
verify, validate, health and drift checks alike.

Subclass :class:`CheckKit`, set ``kind`` and define the fixtures ``record``,
``options`` (the check's table in ``role.toml``, if it needs one) and two
scenarios, as :class:`~fleetcore.plugin.types.CheckContext` objects made
with :func:`fleetcore.testing.conformance.check_context`: ``passing`` (all
is well) and ``failing`` (an ordinary failure: a script exiting 1, a port
nobody listens on). Give ``not_applicable`` when ``applies`` should say no
to some release::

    class TestTcpPort(CheckKit):
        kind = "health"

        @pytest.fixture
        def record(self):
            (record,) = plugin.fleetcore_register_health_checks()
            return record

        @pytest.fixture
        def options(self, listening_port):
            return {"port": listening_port}

        @pytest.fixture
        def failing(self, record, kit_release):
            return check_context("health", kit_release, record=record,
                                 options={"port": free_port()})

``kit_release`` is an empty release folder the scenarios may fill;
``passing`` defaults to a context over it with ``options``.

It checks that the record is well formed (options structure, unknown keys
refused), that ``run`` returns or yields :class:`~fleetcore.plugin.types.Finding`
objects (none when all is well, some with a message, and for drift checks a
``code``, when not), that an ordinary failure is reported rather than
raised, that looking changes nothing in the release, and that ``applies``
answers True or False as it should.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from fleetcore.plugin.types import Check, CheckContext, CheckKind, Finding
from fleetcore.testing.conformance import (
    changes_between,
    check_context,
    fail,
    missing_fixture,
    tree_state,
)
from fleetcore.testing.contracts import check_check_record

__all__ = ["KINDS", "CheckKit", "run_check"]

KINDS: tuple[CheckKind, ...] = ("verify", "validate", "health", "drift")


def run_check(record: Check, ctx: CheckContext) -> list[Finding]:
    """``record.run(ctx)`` as the runner sees it: a list of findings, each
    checked to be a :class:`~fleetcore.plugin.types.Finding` with a message."""
    result = record.run(ctx)
    if result is None:
        return []
    try:
        findings = list(result)
    except TypeError:
        fail(f"{record.name}: run() must return or yield Findings, got {result!r}")
    for finding in findings:
        if not isinstance(finding, Finding):
            fail(f"{record.name}: run() gave {finding!r}, not a fleetcore.plugin.types.Finding")
        if not isinstance(finding.message, str) or not finding.message.strip():
            fail(f"{record.name}: a finding must say what is wrong, got {finding!r}")
    return findings


class CheckKit:
    """Conformance tests for a check; see the module's documentation."""

    kind: ClassVar[CheckKind]

    # -- what a subclass supplies --------------------------------------------------------

    @pytest.fixture
    def record(self) -> Check:
        missing_fixture("CheckKit", "record", "the Check record your plugin registers")

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        """The check's options as a role writes them (``[health.NAME]``)."""
        return {}

    @pytest.fixture
    def kit_release(self, tmp_path: Path) -> Path:
        path = tmp_path / "kit-releases" / "release"
        path.mkdir(parents=True)
        return path

    @pytest.fixture
    def passing(self, record: Check, options: Mapping[str, Any], kit_release: Path) -> CheckContext:
        """A context in which the check finds nothing."""
        return check_context(self.kind, kit_release, record=record, options=options)

    @pytest.fixture
    def failing(self) -> CheckContext:
        missing_fixture(
            "CheckKit", "failing", "a CheckContext in which the check finds an ordinary failure"
        )

    @pytest.fixture
    def not_applicable(self) -> CheckContext | None:
        """A context ``applies`` must say no to (None: there is none)."""
        return None

    # -- the tests ------------------------------------------------------------------------

    def test_record(self, record: Check, options: Mapping[str, Any]) -> None:
        if getattr(self, "kind", None) not in KINDS:
            fail(f"set `kind` of your CheckKit subclass to one of {', '.join(KINDS)}")
        check_check_record(record, example=options)

    def test_passes_when_all_is_well(self, record: Check, passing: CheckContext) -> None:
        findings = run_check(record, passing)
        if findings:
            fail(
                f"{record.name}: found something where all is well: "
                + "; ".join(str(f) for f in findings)
            )

    def test_reports_a_failure_as_findings(self, record: Check, failing: CheckContext) -> None:
        try:
            findings = run_check(record, failing)
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(
                f"{record.name}: an ordinary failure must be reported as findings, "
                f"not raised ({type(exc).__name__}: {exc})"
            ) from exc
        if not findings:
            fail(f"{record.name}: found nothing in the failing scenario")
        if self.kind == "drift":
            for finding in findings:
                if not finding.code:
                    fail(
                        f"{record.name}: drift findings carry a code for drift fixes to "
                        f"claim, {finding!r} has none"
                    )

    def test_looking_changes_nothing(
        self, record: Check, passing: CheckContext, failing: CheckContext
    ) -> None:
        for ctx in (passing, failing):
            before = tree_state(ctx.release_dir)
            run_check(record, ctx)
            changed = changes_between(before, tree_state(ctx.release_dir))
            if changed:
                fail(f"{record.name}: checking changed the release: {', '.join(changed)}")

    def test_applies(
        self,
        record: Check,
        passing: CheckContext,
        failing: CheckContext,
        not_applicable: CheckContext | None,
    ) -> None:
        if record.applies is None:
            if not_applicable is not None:
                fail(f"{record.name}: has no applies() but a not_applicable scenario was given")
            return
        for ctx, want in ((passing, True), (failing, True), (not_applicable, False)):
            if ctx is None:
                continue
            answer = record.applies(ctx)
            if type(answer) is not bool:
                fail(f"{record.name}: applies() must return True or False, got {answer!r}")
            if answer is not want:
                fail(
                    f"{record.name}: applies() says {answer} for a release it "
                    f"{'should' if want else 'should not'} look at ({ctx.release_dir})"
                )
