"""Network partitions: the seed's modes (online, disconnected, isolated,
airgapped) by how long the fleet repo has not answered, and what to do when
it answers again."""

from __future__ import annotations

from collections.abc import Callable

from fleetcore.agent.context import AgentContext
from fleetcore.agent.journal import Journal
from fleetcore.agent.state import Network, State

AfterOutage = Callable[[bool], State]
"""Run after a long partition: a drift run (deep after an air gap, else
only the clock), returning the state it leaves."""


class Partitions:
    """Moves a device through the network modes."""

    def __init__(self, ctx: AgentContext, journal: Journal, after_outage: AfterOutage) -> None:
        self.ctx = ctx
        self.journal = journal
        self.after_outage = after_outage

    def unreachable(self, state: State, exc: Exception) -> State:
        """The repo did not answer: move through the seed's partition modes."""
        now = self.ctx.clock.now()
        since = state.unreachable_since or now
        state = self.journal.no_contact(state, since, now)
        outage = (now - since).total_seconds()
        p = self.ctx.config.partition
        network: Network = "online"
        if outage >= p.airgapped_after.seconds:
            network = "airgapped"
        elif outage >= p.isolated_after.seconds:
            network = "isolated"
        elif outage >= p.disconnected_after.seconds:
            network = "disconnected"
        if network != state.network:
            state = self.journal.set_network(
                state, network, f"fleet repo unreachable for {human(outage)}: {exc}"
            )
        return state

    def reachable(self, state: State) -> State:
        """The repo answered: end an outage, report it, and recover from it."""
        now = self.ctx.clock.now()
        if state.unreachable_since is None:
            return self.journal.contact(state, now)
        outage = (now - state.unreachable_since).total_seconds()
        was = state.network
        state = self.journal.contact(state, now)
        if was == "online":
            return state  # a short partition: retried quietly, nothing to report
        self.journal.record(
            None,
            None,
            "success",
            outage,
            f"fleet repo unreachable for {human(outage)} ({was})",
            event="outage",
        )
        state = self.journal.set_network(
            state, "online", f"fleet repo answers again after {human(outage)}"
        )
        if was in ("isolated", "airgapped"):
            # Long partitions: the clock may have drifted (TLS and expiries
            # depend on it); after a permanent one, revalidate everything.
            state = self.after_outage(was == "airgapped")
        return state


def human(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"
