"""Desired states as the server serves them: computed from the database
through :mod:`fleetcore.server.desired`, cached per generation, with ETags.

Every change that can move a desired state bumps the store's generation; the
generation is the ETag of every device's desired state, so the fleet-wide
part is read once per generation and a poll that hits is one primary-key read
(or none at all, see :meth:`DesiredStates.fresh_generation`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from attrs import define
from sqlalchemy.engine import Connection

from fleetcore.policy import DesiredState
from fleetcore.rollout.select import RolloutStrategies
from fleetcore.server import schema as t
from fleetcore.server.desired import (
    Rollout,
    Snapshot,
    compute,
    desired_json,
    device_info,
    device_policy,
    load_snapshot,
)
from fleetcore.server.mirror import Mirror
from fleetcore.server.store import GENERATION, Store, unknown_device

GENERATION_TTL = 0.5
"""Seconds a 304 may be answered from memory after the generation was read.
Changes made through this server invalidate it at once; a change made through
another replica sharing the database may go unseen by a poll for that long
(devices woken by its event ask without their ETag, so the event is never
masked)."""


TARGETS_TTL = 30.0
"""Seconds (on the server's clock) a rollout step's targeted devices are
remembered within one generation. Everything else that moves a desired state
bumps the generation; only time does not (a lock or pin running out in the
seconds before the engine lapses it, which bumps it), so a step's target list
may lag the clock by this much, less than a device's usual poll."""

MAX_REMEMBERED_STEPS = 8
"""Rollout steps whose targets are remembered at once (each is a set of ids)."""


_device = t.devices.c
_policy = t.device_policies.c
_POLICY_COLUMNS = [c.name for c in t.device_policies.c]

ONE_DEVICE = (
    sa.select(
        GENERATION.label("generation"),
        # What computing a desired state reads of the device's row.
        _device.device_id,
        _device.role,
        _device.segment,
        _device.branch,
        _device.commit,
        *[c.label(f"policy_{c.name}") for c in t.device_policies.c],
    )
    .select_from(t.devices.outerjoin(t.device_policies, _policy.device_id == _device.device_id))
    .where(_device.device_id == sa.bindparam("device_id"))
)
"""The generation, a device's row and its policy row in one read, built
once. Every device woken by a fleet-wide event asks for its desired state
at once; composing three statements per request (SQLAlchemy's expression
and cache-key work) cost several times the CPU of running them."""


def _policy_of(row: Any) -> SimpleNamespace | None:
    """The policy columns of a :data:`ONE_DEVICE` row, read as a policy row
    is; None when nothing was ever set for the device."""
    if row.policy_device_id is None:
        return None
    return SimpleNamespace(**{name: row._mapping[f"policy_{name}"] for name in _POLICY_COLUMNS})


@define
class _StepTargets:
    """Which devices one rollout step targets, as found in one generation."""

    generation: int
    found_at: float
    asked: set[str]
    targeted: set[str]


def etag_of(generation: int) -> str:
    return f'"g{generation}"'


class DesiredStates:
    def __init__(
        self,
        store: Store,
        mirror: Mirror,
        strategies: RolloutStrategies,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.store = store
        self.mirror = mirror
        self.strategies = strategies
        self.now = now
        self._snapshot: Snapshot | None = None
        """The fleet-wide part of desired states, for its generation."""
        self._generation: tuple[int, float, int] | None = None
        """(generation, when read, the store's change count before reading)."""
        self._targets: dict[tuple[int, int], _StepTargets] = {}
        """(rollout id, step) -> the devices it targets (:meth:`targeted`)."""

    # -- the generation (the ETag) ----------------------------------------------------

    def etag(self) -> str:
        with self.store.connect() as conn:
            return etag_of(self.store.generation(conn))

    def read_generation(self, conn: Connection) -> int:
        """The generation, remembered for :meth:`fresh_generation`."""
        # The change count first: a commit racing this read then
        # invalidates what is remembered.
        changes = self.store.changes
        generation = self.store.generation(conn)
        self._generation = (generation, time.monotonic(), changes)
        return generation

    def fresh_generation(self) -> int | None:
        """The generation read less than ``GENERATION_TTL`` ago, when nothing
        changed here since; None otherwise."""
        if self._generation is None:
            return None
        generation, read_at, changes = self._generation
        if changes != self.store.changes or time.monotonic() - read_at > GENERATION_TTL:
            return None  # changed here since, or possibly changed by a replica
        return generation

    # -- computing ------------------------------------------------------------------------

    def compute(
        self,
        snap: Snapshot,
        row: Any,
        policy: Any,
        *,
        step: int | None = None,
        rollout: Rollout | None = None,
    ) -> tuple[DesiredState, Rollout | None]:
        """A device's desired state from its row and its policy row;
        ``step``/``rollout`` ask "what if" (a rollout's progress)."""
        return compute(
            device=device_info(row),
            policy=device_policy(policy, getattr(row, "branch", None)),
            snap=snap,
            strategies=self.strategies,
            now=self.now(),
            branch_head=lambda branch: self.mirror.branches().get(branch),
            step=step,
            rollout=rollout,
            running=row.commit,
        )

    def targeted(
        self, snap: Snapshot, rollout: Rollout, step: int, rows: list[Any], policies: dict[str, Any]
    ) -> set[str]:
        """The ids among ``rows`` that ``step`` of ``rollout`` targets.

        A rollout's progress asks this for every step reached, on every
        engine tick, page refresh and ``GET /v1/rollouts/{id}``; asking the
        strategy about every device each time cost seconds of CPU per call
        at 30,000 devices. The answer is remembered for the generation
        (for at most ``TARGETS_TTL``); a device enrolled since (which bumps
        nothing) is asked about on its own."""
        at = self.now().timestamp()
        key = (rollout.id, step)
        memo = self._targets.get(key)
        if (
            memo is None
            or memo.generation != snap.generation
            or not (0 <= at - memo.found_at < TARGETS_TTL)
        ):
            memo = _StepTargets(snap.generation, at, set(), set())
            self._remember(key, memo)
        for row in rows:
            device_id = row.device_id
            if device_id in memo.asked:
                continue
            state, _ = self.compute(snap, row, policies.get(device_id), step=step, rollout=rollout)
            if state.why == "rollout":
                memo.targeted.add(device_id)
            memo.asked.add(device_id)
        return memo.targeted

    def _remember(self, key: tuple[int, int], memo: _StepTargets) -> None:
        targets = self._targets
        for old in [k for k, m in targets.items() if m.generation != memo.generation]:
            del targets[old]
        targets.pop(key, None)
        while len(targets) >= MAX_REMEMBERED_STEPS:
            del targets[next(iter(targets))]
        targets[key] = memo

    def desired(self, device_id: str, conn: Connection | None = None) -> tuple[str, dict[str, Any]]:
        """(ETag, desired state) of one device, read through ``conn`` when
        the caller has one open; a 404 names an unknown device."""
        if conn is None:
            with self.store.connect() as own:
                return self.desired(device_id, own)
        row = conn.execute(ONE_DEVICE, {"device_id": device_id}).first()
        if row is None:
            raise unknown_device(device_id)
        # The fleet-wide part is read once per generation, not once per
        # device: after a fleet-wide event, thousands of woken devices ask
        # at once. The generation is read with the device's rows, before
        # the fleet-wide part: a change committed in between shows in the
        # next generation, never under this one's ETag.
        generation = self.store.generation_of(row.generation)
        snap = self._snapshot
        if snap is None or snap.generation != generation:
            snap = self._snapshot = load_snapshot(conn, self.store, generation)
        policy = _policy_of(row)
        state, rollout = self.compute(snap, row, policy)
        data = desired_json(state, rollout)
        data["resume"] = int(policy.resumes or 0) if policy is not None else 0
        data["safe_mode"] = int(policy.safe_mode_holds or 0) if policy is not None else 0
        return etag_of(snap.generation), data

    def desired_all(self, conn: Connection, where: Any = None) -> dict[str, tuple[str | None, str]]:
        """(commit, why) of every device (matching ``where``), in one pass."""
        snap = load_snapshot(conn, self.store)
        query = sa.select(t.devices)
        if where is not None:
            query = query.where(where)
        rows = list(conn.execute(query))
        policies = {p.device_id: p for p in conn.execute(sa.select(t.device_policies))}
        out: dict[str, tuple[str | None, str]] = {}
        for row in rows:
            state, _ = self.compute(snap, row, policies.get(row.device_id))
            out[row.device_id] = (state.commit, state.why)
        return out
