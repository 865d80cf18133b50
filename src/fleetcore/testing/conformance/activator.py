"""The conformance kit of activators (:class:`~fleetcore.plugin.types.Activator`).

Subclass :class:`ActivatorKit` and define the fixtures ``record``,
``make_release`` and ``running``; ``options`` when the defaults do not do,
and ``kit_project`` to clean up after your services::

    class TestSystemdActivator(ActivatorKit):
        @pytest.fixture
        def record(self):
            (record,) = plugin.fleetcore_register_activators()
            return record

        @pytest.fixture
        def make_release(self, tmp_path):
            # make_release("one"): a release folder whose services, once
            # started, say "one"
            ...

        @pytest.fixture
        def running(self):
            # running(ctx): what the services of ctx.project say, None when
            # nothing of the project runs
            ...

It checks that the record is well formed and ``detect`` recognises the
release (and not an empty folder); that ``start`` brings the release up and
``stop`` takes it down; that starting twice is harmless (the agent starts
again after a crash); that stopping a release never started is harmless
(a first install that failed); that starting a release replaces the one
that ran before (an update, like a rollback, is one ``start``); and, given
``make_broken_release``, that a release that cannot start makes ``start``
raise with a message (the agent then rolls back).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetcore.activate.interface import ActivationContext, ActivatorImpl
from fleetcore.plugin.types import Activator
from fleetcore.testing.conformance import COMMIT, DEVICE, fail, fleetcore_env, missing_fixture
from fleetcore.testing.contracts import check_activator_record

__all__ = ["ActivatorKit", "activation_context"]


def activation_context(
    release_dir: Path, project: str, *, previous_dir: Path | None = None, commit: str = COMMIT
) -> ActivationContext:
    """An :class:`~fleetcore.activate.interface.ActivationContext` as the agent builds it."""
    return ActivationContext(
        device=DEVICE,
        release_dir=release_dir,
        commit=commit,
        env=fleetcore_env(release_dir, DEVICE, commit),
        project=project,
        previous_dir=previous_dir,
    )


class ActivatorKit:
    """Conformance tests for an activator; see the module's documentation."""

    # -- what a subclass supplies --------------------------------------------------------

    @pytest.fixture
    def record(self) -> Activator:
        missing_fixture("ActivatorKit", "record", "the Activator record your plugin registers")

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        """The activator's ``[activate]`` keys, as a TOML table."""
        return {}

    @pytest.fixture
    def make_release(self) -> Callable[[str], Path]:
        missing_fixture(
            "ActivatorKit",
            "make_release",
            "make_release(marker) -> a release folder whose services, started, report marker",
        )

    @pytest.fixture
    def running(self) -> Callable[[ActivationContext], str | None]:
        missing_fixture(
            "ActivatorKit",
            "running",
            "running(ctx) -> the marker of the release running for ctx.project, or None",
        )

    @pytest.fixture
    def make_broken_release(self) -> Callable[[str], Path] | None:
        """``make_broken_release(marker)``: a release whose services cannot be
        brought up (None: the kit skips that test)."""
        return None

    @pytest.fixture
    def kit_project(self) -> str:
        """The project name (``ctx.project``) of this test's services."""
        return f"fleetcore-kit-{uuid.uuid4().hex[:10]}"

    # -- the kit's own fixtures --------------------------------------------------------

    @pytest.fixture
    def activator(
        self,
        record: Activator,
        options: Mapping[str, Any],
        make_release: Callable[[str], Path],
        running: Callable[[ActivationContext], str | None],
        kit_project: str,
    ) -> Iterator[ActivatorImpl]:
        impl = check_activator_record(record, example=options)
        yield impl
        # Whatever a test left running goes, as far as the activator can do it.
        last = activation_context(make_release("kit-cleanup"), kit_project)
        with contextlib.suppress(Exception):
            if running(last) is not None:
                impl.stop(last)

    # -- the tests ------------------------------------------------------------------------

    def test_record_and_detect(
        self,
        record: Activator,
        activator: ActivatorImpl,
        make_release: Callable[[str], Path],
        tmp_path: Path,
    ) -> None:
        if record.detect is None:
            return
        release = make_release("detect")
        if record.detect(release) is not True:
            fail(f"{record.name}: detect() does not recognise a release made for it ({release})")
        empty = tmp_path / "kit-empty-release"
        empty.mkdir()
        if record.detect(empty) is not False:
            fail(f"{record.name}: detect() claims an empty release folder")

    def test_start_then_stop(
        self,
        record: Activator,
        activator: ActivatorImpl,
        make_release: Callable[[str], Path],
        running: Callable[[ActivationContext], str | None],
        kit_project: str,
    ) -> None:
        ctx = activation_context(make_release("one"), kit_project)
        activator.start(ctx)
        _expect(record, running(ctx), "one", "after start()")
        activator.stop(ctx)
        _expect(record, running(ctx), None, "after stop()")

    def test_starting_twice_is_harmless(
        self,
        record: Activator,
        activator: ActivatorImpl,
        make_release: Callable[[str], Path],
        running: Callable[[ActivationContext], str | None],
        kit_project: str,
    ) -> None:
        ctx = activation_context(make_release("one"), kit_project)
        activator.start(ctx)
        activator.start(ctx)
        _expect(record, running(ctx), "one", "after start() twice")

    def test_stopping_what_never_started_is_harmless(
        self,
        record: Activator,
        activator: ActivatorImpl,
        make_release: Callable[[str], Path],
        running: Callable[[ActivationContext], str | None],
        kit_project: str,
    ) -> None:
        ctx = activation_context(make_release("one"), kit_project)
        try:
            activator.stop(ctx)
        except Exception as exc:
            raise AssertionError(
                f"{record.name}: stop() of a release that never started must be "
                f"harmless, it raised {type(exc).__name__}: {exc}"
            ) from exc
        _expect(record, running(ctx), None, "after stop() of a release never started")

    def test_start_replaces_the_previous_release(
        self,
        record: Activator,
        activator: ActivatorImpl,
        make_release: Callable[[str], Path],
        running: Callable[[ActivationContext], str | None],
        kit_project: str,
    ) -> None:
        one = activation_context(make_release("one"), kit_project)
        activator.start(one)
        two = activation_context(make_release("two"), kit_project, previous_dir=one.release_dir)
        activator.start(two)
        _expect(record, running(two), "two", "after start() of the next release")

    def test_a_release_that_cannot_start_is_an_error(
        self,
        record: Activator,
        activator: ActivatorImpl,
        make_broken_release: Callable[[str], Path] | None,
        kit_project: str,
    ) -> None:
        if make_broken_release is None:
            pytest.skip(f"{record.name}: no make_broken_release given")
        ctx = activation_context(make_broken_release("broken"), kit_project)
        # The agent rolls back on any exception and records its message.
        try:
            activator.start(ctx)
        except Exception as exc:
            if not str(exc).strip():
                fail(f"{record.name}: start() failed without saying why ({type(exc).__name__})")
        else:
            fail(f"{record.name}: start() of a release that cannot start returned normally")


def _expect(record: Activator, got: str | None, want: str | None, when: str) -> None:
    if got != want:
        what = f"release {want!r} running" if want else "nothing running"
        fail(f"{record.name}: expected {what} {when}, found {got!r}")
