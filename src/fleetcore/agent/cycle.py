"""One cycle's decisions: ask for the desired state, leave or keep safe mode,
converge or update through the gates, and skip to the latest commit.

::

    desired state -> safe mode? -> converged? -> role.toml -> gates
                  -> pipeline -> a newer commit pending?
"""

from __future__ import annotations

import logging

import attrs

from fleetcore.agent.context import AgentContext
from fleetcore.agent.desired import Desired
from fleetcore.agent.disk import free_fetch_cache, out_of_space
from fleetcore.agent.gates import Deferred, throttle_gate, window_gate
from fleetcore.agent.health import recheck
from fleetcore.agent.journal import Journal
from fleetcore.agent.partitions import Partitions
from fleetcore.agent.pipeline import Pipeline
from fleetcore.agent.protection import relation_of, rollback_refusal
from fleetcore.agent.results import CycleResult
from fleetcore.agent.state import State
from fleetcore.errors import ConfigError, FetchError, FleetcoreError
from fleetcore.policy import DesiredState

log = logging.getLogger("fleetcore.agent")


WAYS_OUT = ("pin", "lock")
"""Desired states an operator set on purpose: they pass the update throttle
(minimum gap, hourly cap, pause after a failure), never the maintenance window."""


class Cycle:
    """Decides what one cycle does, and hands updates to the pipeline."""

    def __init__(
        self,
        ctx: AgentContext,
        journal: Journal,
        desired: Desired,
        partitions: Partitions,
        pipeline: Pipeline,
    ) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.journal = journal
        self.desired = desired
        self.partitions = partitions
        self.pipeline = pipeline
        self._refused: str | None = None
        """The last commit refused by rollback protection (recorded once)."""

    def run(self, state: State) -> CycleResult:
        ctx, journal = self.ctx, self.journal
        now = ctx.clock.now()
        current_commit = self.store.commit_of(self.store.current())
        ctx.network = state.network
        try:
            desired, head = self.desired.read()
        except FetchError as exc:
            if out_of_space(exc):
                # git brings a whole commit to read its fleet policy: a commit
                # bigger than the disk fails here, and its leftovers must go.
                free_fetch_cache(ctx, keep=(current_commit,))
                message = f"disk full while reading the fleet repo: {exc}"
                log.error("%s; the fetcher's cache was cleared", message)
                journal.record(current_commit, None, "skipped", 0.0, message)
                return CycleResult(outcome="failed", commit=current_commit, message=message)
            state = self.partitions.unreachable(state, exc)
            log.warning(
                "fleet repo unreachable (network mode %s), keeping %s: %s",
                state.network,
                current_commit[:12] if current_commit else "nothing",
                exc,
            )
            return CycleResult(
                outcome="unreachable",
                commit=current_commit,
                message=f"fleet repo unreachable: {exc}",
            )
        if state.unreachable_since is None:
            # The usual case, no outage to end: the answer and the desired
            # state in one write.
            state = journal.desired_seen(state, desired, now, contact=ctx.clock.now())
        else:
            state = self.partitions.reachable(state)
            state = journal.desired_seen(state, desired, now)
        state, held = self._safe_mode(state, desired, current_commit)
        if held is not None:
            return held
        if desired.commit is None or desired.commit == current_commit:
            return self._converged(state, desired, current_commit)
        commit = desired.commit
        if current_commit is not None:
            try:
                relation = relation_of(ctx.source(), current_commit, commit)
            except FetchError as exc:
                if not out_of_space(exc):
                    return CycleResult(
                        outcome="unreachable", commit=current_commit, message=str(exc)
                    )
                # The history between the two (git deepens its shallow cache
                # to tell) does not fit on the disk: give the space back and
                # treat it as a source that cannot tell, or the device would
                # stay behind for good.
                free_fetch_cache(ctx, keep=(current_commit, commit))
                log.warning(
                    "cannot tell how %s relates to %s: their history does not fit on "
                    "the disk; updating without rollback protection",
                    commit[:12],
                    current_commit[:12],
                )
                relation = None
            refusal = rollback_refusal(relation, current_commit, commit, desired.why)
            if refusal is not None:
                return self._refuse_rollback(commit, current_commit, refusal)
        try:
            role_cfg = self.desired.role_config(commit)
        except FetchError as exc:
            return CycleResult(outcome="unreachable", commit=current_commit, message=str(exc))
        except ConfigError as exc:
            return self._refuse(state, commit, current_commit, f"invalid role.toml: {exc}")
        why: str = desired.why
        deferred = throttle_gate(state, ctx.config.throttle, now)
        if deferred is not None and desired.why in WAYS_OUT:
            # A pin or a lock is how an operator (or the server's blast-radius
            # protection) sends devices back to a release that worked: it must
            # not wait an hour behind the update that went wrong.
            log.warning("%s passes the throttle: %s", desired.why, deferred.reason)
            why = f"{desired.why}, passing the throttle ({deferred.reason})"
            deferred = None
        if deferred is None and role_cfg.requires_reboot:
            deferred = window_gate(desired.maintenance_window, now)
        if deferred is not None:
            return self._defer(state, commit, deferred)
        if state.pending_commit and state.pending_commit not in (commit, current_commit):
            journal.record(
                None,
                state.pending_commit,
                "skipped",
                0.0,
                f"superseded by {commit[:12]} before it was deployed",
            )
        self.desired.deploying(head if desired.why != "override" else None)
        result = self.pipeline.deploy(
            state,
            commit,
            why,
            lambda work: ctx.source().fetch(commit, ctx.device.role, work),
            role_cfg,
        )
        if result.outcome != "updated":
            return result
        # Skip-to-latest: a commit that became desired while we deployed.
        pending = self._newer_commit(commit)
        if pending:
            journal.pending(journal.load(), pending)
            log.info("a newer commit %s is pending", pending[:12])
        return attrs.evolve(result, pending_commit=pending)

    def _safe_mode(
        self, state: State, desired: DesiredState, current_commit: str | None
    ) -> tuple[State, CycleResult | None]:
        """Enter safe mode (an operator's request), leave it (a resume, a new
        forced version), or stay in it."""
        journal = self.journal
        if desired.safe_mode != state.safe_mode_seen:
            entering = desired.safe_mode > state.safe_mode_seen
            state = journal.safe_mode_seen(state, desired.safe_mode)
            if entering and state.mode != "safe_mode":
                state = journal.set_mode(state, "safe_mode", "entered by an operator")
                # A resume already counted must not lift the safe mode just entered.
                state = journal.resume_seen(state, desired.resume)
        if state.mode == "safe_mode":
            if desired.resume > state.resume_seen:
                state = journal.resume_seen(state, desired.resume)
                state = journal.set_mode(state, "normal", "resumed from the control server")
            elif desired.why == "pin" and desired.commit != state.safe_mode_pin:
                state = journal.set_mode(state, "normal", f"new forced version {desired.commit}")
            else:
                return state, CycleResult(
                    outcome="safe_mode",
                    commit=current_commit,
                    message=f"safe mode: {state.mode_reason}; `fleetcore agent resume` to leave it",
                )
        if desired.resume != state.resume_seen:
            # A resume given while the device was not in safe mode lifts nothing later.
            state = journal.resume_seen(state, desired.resume)
        return state, None

    def _converged(
        self, state: State, desired: DesiredState, current_commit: str | None
    ) -> CycleResult:
        """Nothing to deploy: say how the running release is doing."""
        if state.pending_commit:
            state = self.journal.pending(state, None)
        if current_commit is None:
            return CycleResult(outcome="deferred", message=desired.reason or "nothing to run")
        if state.status != "healthy":
            state = recheck(self.ctx, self.journal, state)
        if state.status != "healthy":
            return CycleResult(
                outcome="failed",
                commit=current_commit,
                message=f"running {current_commit[:12]} but {state.status}: {state.status_reason}",
            )
        return CycleResult(
            outcome="converged",
            commit=current_commit,
            message=f"running {current_commit[:12]} ({desired.reason or desired.why})",
        )

    def _defer(self, state: State, commit: str, deferred: Deferred) -> CycleResult:
        self.journal.pending(state, commit)
        log.info("update to %s deferred: %s", commit[:12], deferred.reason)
        return CycleResult(
            outcome="deferred",
            message=deferred.reason,
            commit=self.store.commit_of(self.store.current()),
            pending_commit=commit,
            retry_after=deferred.until,
        )

    def _refuse(
        self, state: State, commit: str, current_commit: str | None, reason: str
    ) -> CycleResult:
        now = self.ctx.clock.now()
        self.journal.record(current_commit, commit, "failed", 0.0, reason)
        self.journal.count_failure(attrs.evolve(state, last_attempt=now), reason)
        return CycleResult(outcome="failed", commit=current_commit, message=reason)

    def _refuse_rollback(self, commit: str, current_commit: str, reason: str) -> CycleResult:
        """The device stays on its release; the history says why, once per
        refused commit (not every cycle), and no failure is counted: nothing
        on the device failed."""
        if self._refused != commit:
            self._refused = commit
            self.journal.record(current_commit, commit, "failed", 0.0, reason)
        log.error("%s", reason)
        return CycleResult(outcome="failed", commit=current_commit, message=reason)

    def _newer_commit(self, deployed: str) -> str | None:
        try:
            desired = self.desired.latest()
        except (FleetcoreError, OSError):
            return None
        if desired is None:
            return None
        return desired.commit if desired.commit not in (None, deployed) else None
