"""The agent's journal: every change of state.json, the history records, and
the lifecycle hooks that go with them (mode changes, finished updates).

Other parts of the agent decide; the journal writes what they decided, so
each transition is made (and notified) in one place.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

import attrs

from fleetcore.agent.context import AgentContext
from fleetcore.agent.state import InFlight, Network, Phase, State, Status
from fleetcore.plugin.types import ModeChange, UpdateRecord, UpdateResult
from fleetcore.policy import DesiredState

log = logging.getLogger("fleetcore.agent")


class Journal:
    """State transitions and history of one device."""

    def __init__(self, ctx: AgentContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def load(self) -> State:
        return self.store.load()

    def _change(self, state: State, **changes: Any) -> State:
        """Write ``changes`` to state.json (atomically) and return the new state."""
        return self.store.update(state, **changes)

    # -- the desired state and the repo's answers ------------------------------------

    def desired_seen(
        self,
        state: State,
        desired: DesiredState,
        now: dt.datetime,
        *,
        contact: dt.datetime | None = None,
    ) -> State:
        """The desired state was read at ``now``; with ``contact``, the repo's
        answer is recorded in the same write (see :meth:`contact`)."""
        answered = {} if contact is None else {"unreachable_since": None, "last_contact": contact}
        return self._change(
            state,
            last_check=now,
            desired_commit=desired.commit,
            desired_why=desired.why,
            desired_reason=desired.reason,
            desired_issued_at=desired.issued_at,
            **answered,
        )

    def resume_seen(self, state: State, resume: int) -> State:
        return self._change(state, resume_seen=resume)

    def safe_mode_seen(self, state: State, count: int) -> State:
        return self._change(state, safe_mode_seen=count)

    def contact(self, state: State, now: dt.datetime) -> State:
        """The repo answered; an outage, if there was one, is over."""
        return self._change(state, unreachable_since=None, last_contact=now)

    def no_contact(self, state: State, since: dt.datetime, now: dt.datetime) -> State:
        """The repo did not answer (since ``since``)."""
        return self._change(state, unreachable_since=since, last_check=now)

    def drift_checked(
        self, state: State, verdict: str, summary: str, *, deep: bool, now: dt.datetime
    ) -> State:
        stamp = {"last_deep_check": now} if deep else {"last_light_check": now}
        return self._change(state, drift=verdict, drift_reason=summary, **stamp)

    # -- updates -----------------------------------------------------------------

    def begin(self, state: State, flight: InFlight, attempts: tuple[Any, ...]) -> State:
        """An update starts: what to finish or undo if it is interrupted."""
        return self._change(
            state,
            in_flight=flight,
            last_attempt=flight.started,
            recent_attempts=attempts,
            pending_commit=None,
        )

    def phase(self, state: State, phase: Phase, *, durable: bool = True) -> State:
        """The update reaches ``phase``. Phases a crash recovers from the same
        way as the one before (the steps before validation all drop the
        half-made release) need not be written: ``durable=False`` keeps them
        in memory, and the next write carries them."""
        assert state.in_flight is not None
        flight = attrs.evolve(state.in_flight, phase=phase)
        if not durable:
            return attrs.evolve(state, in_flight=flight)
        return self._change(state, in_flight=flight)

    def deployed(self, state: State, activator: str, entry: UpdateRecord) -> State:
        """The update is done and healthy: ``activator`` runs it; ``entry``,
        its history record (written after this), is the ``last_update``."""
        return self._change(
            state,
            in_flight=None,
            status="healthy",
            status_reason="",
            consecutive_failures=0,
            current_activator=activator,
            previous_activator=state.current_activator,
            last_update=entry,
        )

    def abandoned(self, state: State, *, status: Status | None = None) -> State:
        """The update stopped before the swap: what runs is untouched (and,
        after a crash, back in the ``status`` it had before)."""
        if status is None:
            return self._change(state, in_flight=None)
        return self._change(state, in_flight=None, status=status)

    def rolled_back(
        self, state: State, status: Status, reason: str, activator: str | None
    ) -> State:
        """The update was undone after the swap: ``activator`` runs what runs
        again, in ``status``."""
        return self._change(
            state,
            in_flight=None,
            status=status,
            status_reason=reason,
            current_activator=activator,
        )

    def pending(self, state: State, commit: str | None) -> State:
        return self._change(state, pending_commit=commit)

    def status(self, state: State, status: Status, reason: str = "") -> State:
        return self._change(state, status=status, status_reason=reason)

    def record(
        self,
        from_commit: str | None,
        to_commit: str | None,
        result: UpdateResult,
        duration: float,
        reason: str,
        *,
        event: str = "update",
    ) -> UpdateRecord:
        """A history entry; an update's also goes to ``fleetcore_update_finished``."""
        entry = self.entry(from_commit, to_commit, result, duration, reason, event=event)
        self.append(entry)
        return entry

    def entry(
        self,
        from_commit: str | None,
        to_commit: str | None,
        result: UpdateResult,
        duration: float,
        reason: str,
        *,
        event: str = "update",
    ) -> UpdateRecord:
        """A history entry, not written yet (see :meth:`append`)."""
        return UpdateRecord(
            timestamp=self.ctx.clock.now(),
            device_id=self.ctx.device.device_id,
            role=self.ctx.device.role,
            from_commit=from_commit,
            to_commit=to_commit,
            result=result,
            reason=reason,
            duration_seconds=round(duration, 3),
            event=event,
        )

    def append(self, entry: UpdateRecord) -> None:
        """Write ``entry`` to the history; an update's goes to ``fleetcore_update_finished``."""
        self.store.record(entry)
        if entry.event == "update":
            self.ctx.pm.notify("fleetcore_update_finished", record=entry)

    def finished(
        self,
        state: State,
        from_commit: str | None,
        to_commit: str | None,
        result: UpdateResult,
        duration: float,
        reason: str,
    ) -> State:
        """An update's history entry, kept as the state's ``last_update``."""
        entry = self.record(from_commit, to_commit, result, duration, reason)
        return self._change(state, last_update=entry)

    # -- failures and modes --------------------------------------------------------

    def count_failure(self, state: State, reason: str) -> State:
        """One more failed update; too many in a row: safe mode."""
        failures = state.consecutive_failures + 1
        state = self._change(
            state, consecutive_failures=failures, last_failure=self.ctx.clock.now()
        )
        if failures >= self.ctx.config.throttle.max_failures and state.mode != "safe_mode":
            state = self.set_mode(
                state, "safe_mode", f"{failures} consecutive failed updates; last: {reason}"
            )
        return state

    def set_mode(self, state: State, mode: Literal["normal", "safe_mode"], reason: str) -> State:
        old = state.mode
        pin = state.desired_commit if state.desired_why == "pin" else None
        changes: dict[str, object] = {
            "mode": mode,
            "mode_since": self.ctx.clock.now(),
            "mode_reason": reason,
        }
        if mode == "safe_mode":
            changes["safe_mode_pin"] = pin
        else:
            changes["consecutive_failures"] = 0
        state = self._change(state, **changes)
        # The seed's levels: safe mode is CRITICAL (someone must look), leaving it a warning.
        level = logging.CRITICAL if mode == "safe_mode" else logging.WARNING
        log.log(level, "mode %s -> %s: %s", old, mode, reason)
        self.ctx.pm.notify(
            "fleetcore_mode_changed",
            change=ModeChange(device=self.ctx.device, old=old, new=mode, reason=reason),
        )
        return state

    def set_network(self, state: State, network: Network, reason: str) -> State:
        old = state.network
        state = self._change(state, network=network, network_since=self.ctx.clock.now())
        self.ctx.network = network
        log.warning("network %s -> %s: %s", old, network, reason)
        self.record(
            None, None, "success", 0.0, f"network {old} -> {network}: {reason}", event="mode"
        )
        self.ctx.pm.notify(
            "fleetcore_mode_changed",
            change=ModeChange(device=self.ctx.device, old=old, new=network, reason=reason),
        )
        return state
