"""Undoing an update: before the swap (abandon: drop the half-made release),
after it (roll back: swap back and start the previous release again), and
after a crash (recover: whichever of the two the interrupted phase needs)."""

from __future__ import annotations

import logging
import shutil

from fleetcore.activate.select import build_activator, select_activator
from fleetcore.agent import logs
from fleetcore.agent.context import AgentContext
from fleetcore.agent.contexts import activation_ctx
from fleetcore.agent.health import wait_healthy
from fleetcore.agent.journal import Journal
from fleetcore.agent.releases import drop_release, read_env, role_config_of
from fleetcore.agent.results import CycleResult
from fleetcore.agent.state import Phase, State, Status
from fleetcore.errors import FleetcoreError
from fleetcore.plugin.types import UpdateResult

log = logging.getLogger("fleetcore.agent")

BEFORE_SWAP: tuple[Phase, ...] = ("fetch", "unpack", "verify", "secrets", "validate")


class Rollback:
    """Abandon, roll back and crash recovery of one device's updates."""

    def __init__(self, ctx: AgentContext, journal: Journal) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.journal = journal

    def abandon(
        self, state: State, result: UpdateResult, reason: str, started: float
    ) -> CycleResult:
        """An update refused before the swap: clean up, keep what runs."""
        reason = self.ctx.redact(reason)
        flight = state.in_flight
        assert flight is not None
        shutil.rmtree(self.store.staging, ignore_errors=True)
        drop_release(self.store, flight.release)
        log.error(
            "update to %s %s: %s",
            flight.to_commit[:12],
            "skipped" if result == "skipped" else "refused",
            reason,
        )
        state = self.journal.abandoned(state)
        state = self.journal.finished(
            state,
            flight.from_commit,
            flight.to_commit,
            result,
            self.ctx.clock.monotonic() - started,
            reason,
        )
        if result == "failed":
            self.journal.count_failure(state, reason)
        logs.set_context(commit=flight.from_commit)
        return CycleResult(
            outcome="failed",
            commit=flight.from_commit,
            message=f"update to {flight.to_commit[:12]} {result}: {reason}",
        )

    def roll_back(
        self, state: State, reason: str, started: float, *, new_activator: str | None = None
    ) -> CycleResult:
        """Swap back to the release that ran before, and start it again."""
        ctx, store = self.ctx, self.store
        reason = ctx.redact(reason)
        flight = state.in_flight
        assert flight is not None
        log.error("update to %s failed, rolling back: %s", flight.to_commit[:12], reason)
        state = self.journal.phase(state, "rollback")
        old = (
            flight.from_release
            if flight.from_release and store.release_dir(flight.from_release).is_dir()
            else None
        )
        new_dir = store.release_dir(flight.release)
        status: Status = "failed"
        status_reason = f"update to {flight.to_commit[:12]} failed and nothing ran before it"
        if new_activator is None and new_dir.is_dir():
            try:
                new_activator, _ = select_activator(
                    ctx.pm, new_dir, role_config_of(store, flight.release), source=ctx.role_file
                )
            except FleetcoreError as exc:
                # Half removed by a rollback the power cut short: it cannot say
                # what started it, and that must not stop the rollback.
                log.warning("cannot tell what runs %s: %s", flight.release, exc)
        old_activator = state.current_activator
        if old is not None:
            store.point(store.current_link, old)
            store.point(store.previous_link, flight.previous_release)
            try:
                old_dir = store.release_dir(old)
                role_cfg = role_config_of(store, old)
                old_name, activator = select_activator(
                    ctx.pm, old_dir, role_cfg, source=ctx.role_file
                )
                if new_activator and new_activator != old_name and new_dir.is_dir():
                    self.stop_quietly(new_activator, flight.release, flight.to_commit)
                activator.start(activation_ctx(ctx, old, flight.from_commit or ""))
                old_activator = old_name
                wait_healthy(
                    ctx,
                    old_dir,
                    flight.from_commit or "",
                    role_config_of(store, old),
                    old_name,
                    read_env(store, old),
                )
                status, status_reason = "healthy", ""
            except Exception as exc:
                status = "degraded"
                status_reason = (
                    f"rolled back to {str(flight.from_commit)[:12]}, which is not "
                    f"healthy either: {exc}"
                )
                log.error("%s", status_reason)
        else:
            if new_activator and new_dir.is_dir():
                self.stop_quietly(new_activator, flight.release, flight.to_commit)
            store.point(store.current_link, None)
            store.point(store.previous_link, flight.previous_release)
        drop_release(store, flight.release)
        state = self.journal.rolled_back(state, status, status_reason, old_activator)
        state = self.journal.finished(
            state,
            flight.from_commit,
            flight.to_commit,
            "rollback",
            ctx.clock.monotonic() - started,
            reason,
        )
        self.journal.count_failure(state, reason)
        logs.set_context(commit=flight.from_commit)
        return CycleResult(
            outcome="rolled_back",
            commit=flight.from_commit,
            message=f"update to {flight.to_commit[:12]} rolled back: {reason}",
        )

    def stop_quietly(self, activator: str, release: str, commit: str) -> None:
        """Take a release's services down; a failure is only logged."""
        try:
            impl = build_activator(self.ctx.pm, activator, None, source=self.ctx.role_file)
            impl.stop(activation_ctx(self.ctx, release, commit))
        except Exception as exc:
            log.warning("could not stop %s: %s", release, exc)

    def recover(self, state: State) -> State:
        """Finish or undo an update a crash interrupted. Called under the lock."""
        store = self.store
        flight = state.in_flight
        if flight is None:
            if store.staging.exists() and any(store.staging.iterdir()):
                shutil.rmtree(store.staging, ignore_errors=True)
            return state
        log.warning(
            "the last update (to %s) was interrupted during %s; recovering",
            flight.to_commit[:12],
            flight.phase,
        )
        if flight.phase in BEFORE_SWAP and store.current() == flight.from_release:
            # Nothing that runs was touched: drop the half-made release.
            shutil.rmtree(store.staging, ignore_errors=True)
            drop_release(store, flight.release)
            state = self.journal.abandoned(state, status=flight.status_before)
            self.journal.record(
                flight.from_commit,
                flight.to_commit,
                "failed",
                0.0,
                f"interrupted during {flight.phase}",
            )
            return state
        result = self.roll_back(
            state, f"interrupted during {flight.phase}", self.ctx.clock.monotonic()
        )
        log.warning("recovered: %s", result.message)
        return self.journal.load()
