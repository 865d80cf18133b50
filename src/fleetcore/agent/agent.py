"""The agent of one device: its parts wired together, and the entry points
the CLI and the loop use (once, apply, check, resume, report, recover).

::

    lock -> recover -> cycle (desired state -> gates -> pipeline) -> report

Each part gets what it needs (:class:`AgentContext`, the journal, ...); none
of them reaches back into this class.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fleetcore.agent import logs
from fleetcore.agent.clock import Clock
from fleetcore.agent.context import AgentContext
from fleetcore.agent.cycle import Cycle
from fleetcore.agent.desired import Desired
from fleetcore.agent.health import recheck
from fleetcore.agent.journal import Journal
from fleetcore.agent.partitions import Partitions
from fleetcore.agent.pipeline import Pipeline
from fleetcore.agent.protection import bundle_refusal
from fleetcore.agent.results import CycleResult
from fleetcore.agent.rollback import Rollback
from fleetcore.agent.state import State, StateStore, history_json
from fleetcore.config.agent import AgentConfig
from fleetcore.errors import FleetcoreError
from fleetcore.fetch.interface import Fetched
from fleetcore.files import atomic_write, exclusive_lock
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import DeviceInfo
from fleetcore.rollout.select import RolloutStrategies

if TYPE_CHECKING:
    # Drift runs (`agent check`, the service's timers) import it: an update does not.
    from fleetcore.agent.drift import DriftResult

log = logging.getLogger("fleetcore.agent")


class Agent:
    """One device's agent: configuration, plugins, state folder and clock."""

    def __init__(
        self, config: AgentConfig, *, pm: PluginManager | None = None, clock: Clock | None = None
    ) -> None:
        client: Any = None
        if config.server is not None:
            # Managed mode: imported only when used, git-only devices never pay for it.
            from fleetcore.agent.managed import ServerClient

            client = ServerClient(config)
        self.ctx = AgentContext(
            config,
            pm=pm or PluginManager(disabled=config.plugins.disable),
            clock=clock or Clock(),
            client=client,
        )
        self.strategies = RolloutStrategies(self.ctx.pm)
        self.journal = Journal(self.ctx)
        self.desired = Desired(self.ctx, self.strategies)
        self.rollback = Rollback(self.ctx, self.journal)
        self.pipeline = Pipeline(self.ctx, self.journal, self.rollback)
        self.partitions = Partitions(self.ctx, self.journal, self._after_outage)
        self.cycle = Cycle(self.ctx, self.journal, self.desired, self.partitions, self.pipeline)
        logs.set_context(
            device_id=config.device_id,
            role=config.role,
            # The seed's Loki label (prod, staging): the device's `environment` label.
            environment=config.labels.get("environment"),
        )

    # -- what the CLI, the loop and the status report read ---------------------------

    @property
    def config(self) -> AgentConfig:
        return self.ctx.config

    @property
    def pm(self) -> PluginManager:
        return self.ctx.pm

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def store(self) -> StateStore:
        return self.ctx.store

    @property
    def device(self) -> DeviceInfo:
        return self.ctx.device

    @property
    def client(self) -> Any:
        return self.ctx.client

    @property
    def config_source(self) -> str:
        return self.ctx.config_source

    @property
    def fresh_desired(self) -> bool:
        """Set when woken by a server event or SIGHUP: the next question to the
        server goes without the ETag, so no cached answer can hide a change."""
        return self.desired.fresh

    @fresh_desired.setter
    def fresh_desired(self, value: bool) -> None:
        self.desired.fresh = value

    # -- entry points ------------------------------------------------------------------

    def once(self) -> CycleResult:
        """One cycle: converge to the desired release if the gates allow it."""
        store = self.store
        store.ensure()
        try:
            with exclusive_lock(store.lock_file):
                state = self.recover(store.load())
                logs.set_context(commit=store.commit_of(store.current()))
                result = self.cycle.run(state)
                if self.client is not None and result.outcome != "unreachable":
                    self.report()
                return result
        except FleetcoreError as exc:
            if exc.exit_code == 3:
                log.info("%s", exc)
                return CycleResult(outcome="locked", message=str(exc))
            raise

    def apply(
        self,
        fetched: Fetched,
        *,
        reason: str = "bundle",
        signed: tuple[bytes, bytes | None] | None = None,
    ) -> CycleResult:
        """Apply a release brought by hand (an offline bundle): the same
        verify, unpack, validate, activate and health steps, no gates.
        ``signed``: the bundle's header bytes and signature, checked against
        ``[verify.signature]`` when the device requires signatures."""
        store = self.store
        store.ensure()
        with exclusive_lock(store.lock_file):
            state = self.recover(store.load())
            manifest = fetched.manifest
            if manifest.role != self.device.role:
                raise FleetcoreError(
                    f"the bundle is for role {manifest.role!r}, "
                    f"this device runs {self.device.role!r}"
                )
            if manifest.commit == store.commit_of(store.current()):
                return CycleResult(
                    outcome="converged",
                    commit=manifest.commit,
                    message=f"already running {manifest.commit[:12]}",
                )
            required = "signature" in self.config.verify.checks
            if required:
                refusal = bundle_refusal(
                    self.config.verify.checks["signature"], manifest.commit, signed
                )
                if refusal is not None:
                    log.error("%s", refusal)
                    current = store.commit_of(store.current())
                    self.journal.record(current, manifest.commit, "failed", 0.0, refusal)
                    return CycleResult(outcome="failed", commit=current, message=refusal)
            # role.toml is read from the release once it is unpacked and verified.
            # A bundle comes by hand to a device that may never reach the repo:
            # no skip-to-latest after it.
            return self.pipeline.deploy(
                state, manifest.commit, reason, lambda _w: fetched, None, signed_bundle=required
            )

    def check(self, *, deep: bool, fix: bool) -> DriftResult:
        """A drift run under the agent's lock: find, fix, re-check, record."""
        from fleetcore.agent.drift import follow_up, run_drift

        store = self.store
        store.ensure()
        with exclusive_lock(store.lock_file):
            self.recover(store.load())
            result = run_drift(self.ctx, deep=deep, fix=fix)
            follow_up(self.ctx, self.journal, self.journal.load(), result)
            if fix and any(f.code == "release-missing" for f in result.left):
                # Nothing to repair in place: install the desired release again.
                outcome = self.cycle.run(self.journal.load())
                log.info("reinstall: %s", outcome.message)
            return result

    def resume(self) -> State:
        """Leave safe mode (an operator's decision)."""
        self.store.ensure()
        with exclusive_lock(self.store.lock_file):
            state = self.journal.load()
            if state.mode == "safe_mode":
                state = self.journal.set_mode(state, "normal", "resumed by an operator")
            return state

    def recover(self, state: State) -> State:
        """Finish or undo an update a crash interrupted, or finish one that
        rebooted the device on purpose. Called under the lock."""
        if state.in_flight is not None and state.in_flight.phase == "reboot":
            return self.pipeline.after_reboot(state)
        return self.rollback.recover(state)

    def recheck(self, state: State) -> State:
        """Run the current release's health checks now and record the status."""
        return recheck(self.ctx, self.journal, state)

    def report(self) -> bool:
        """Send the status report and the history the server has not seen.
        Best effort: a server that does not answer gets it next time."""
        from fleetcore.agent.managed import status_report

        if self.client is None:
            return False
        sent_file = self.store.cache / "server" / "history-sent"
        try:
            sent = int(sent_file.read_text()) if sent_file.exists() else 0
        except ValueError:
            sent = 0
        try:
            self.client.report_status(status_report(self.ctx))
            entries = self.store.history()
            self.client.send_history([history_json(e) for e in entries[sent:]])
            sent_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(sent_file, str(len(entries)).encode())
            return True
        except (FleetcoreError, OSError) as exc:
            log.warning("could not report to the server: %s", exc)
            return False

    def _after_outage(self, deep: bool) -> State:
        """After a long partition: a drift run (only the clock, or everything
        after an air gap), recorded like any other."""
        from fleetcore.agent.drift import follow_up, run_drift

        result = run_drift(
            self.ctx, deep=deep, fix=self.config.drift.fix, only=None if deep else ("clock",)
        )
        return follow_up(self.ctx, self.journal, self.journal.load(), result)
