"""The update pipeline of one device.

::

    lock -> recover -> desired state -> gates -> fetch -> unpack+verify -> secrets
         -> validate -> swap links -> activate -> settle -> health -> keep | roll back
         -> record

Every step before the swap works on copies: a failure there leaves the
running release untouched. From the swap on, any failure (or a crash, found
by the next run through ``state.in_flight``) swaps back to the previous
release and starts it again.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs
from attrs import frozen

from fleetcore.activate.interface import ENV_FILE, ActivationContext, ActivatorImpl, project_name
from fleetcore.agent import logs
from fleetcore.agent.clock import Clock
from fleetcore.agent.gates import Deferred, attempts_after, throttle_gate, window_gate
from fleetcore.agent.state import InFlight, Network, Phase, State, StateStore, release_name
from fleetcore.checks import runner
from fleetcore.config.agent import AgentConfig
from fleetcore.config.convert import structure
from fleetcore.config.fleet import FleetPolicy, parse_device_policy, parse_fleet_policy
from fleetcore.config.role import CheckSelection, RoleConfig, parse_role_config
from fleetcore.config.units import Duration
from fleetcore.errors import ConfigError, FetchError, FleetcoreError, VerifyError
from fleetcore.fetch.interface import Fetched, Source
from fleetcore.files import exclusive_lock
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import (
    CheckContext,
    DeviceInfo,
    ModeChange,
    SourceSettings,
    UpdateRecord,
    UpdateResult,
    UpdateStart,
)
from fleetcore.policy import DesiredState, resolve
from fleetcore.release import Manifest, unpack, write_manifest
from fleetcore.rollout.select import RolloutStrategies
from fleetcore.secrets.interface import SecretsContext

if TYPE_CHECKING:
    from fleetcore.agent.drift import DriftResult

log = logging.getLogger("fleetcore.agent")
T = TypeVar("T")

Outcome = Literal[
    "converged",
    "updated",
    "failed",
    "rolled_back",
    "deferred",
    "locked",
    "safe_mode",
    "unreachable",
]
EXIT_CODES: dict[Outcome, int] = {
    "converged": 0,
    "updated": 0,
    "failed": 1,
    "rolled_back": 1,
    "deferred": 3,
    "locked": 3,
    "safe_mode": 4,
    "unreachable": 5,
}


@frozen(kw_only=True)
class CycleResult:
    """What one cycle did, for the CLI and the loop."""

    outcome: Outcome
    message: str
    commit: str | None = None
    pending_commit: str | None = None
    retry_after: dt.datetime | None = None

    @property
    def exit_code(self) -> int:
        if self.outcome == "updated" and self.pending_commit:
            return 3  # healthy, but a newer commit is already waiting
        return EXIT_CODES[self.outcome]


class UpdateFailed(FleetcoreError):
    """A step before activation refused the release."""


class Unhealthy(FleetcoreError):
    """The activated release did not pass its health checks."""


class DiskFull(FleetcoreError):
    """Not enough free space for the update even after cleaning old releases."""


class Agent:
    """One device's agent: configuration, plugins, state folder and clock."""

    def __init__(
        self, config: AgentConfig, *, pm: PluginManager | None = None, clock: Clock | None = None
    ) -> None:
        self.config = config
        self.pm = pm or PluginManager(disabled=config.plugins.disable)
        self.clock = clock or Clock()
        self.store = StateStore(config.state_dir)
        self.device = DeviceInfo(
            device_id=config.device_id, role=config.role, segment=config.segment
        )
        self.config_source = str(config.path or "agent.toml")
        self._source: Source | None = None
        self._head_seen: str | None = None
        self._role_at_head: tuple[str, bytes | None] | None = None
        self._network = "online"
        self._secret_values: frozenset[str] = frozenset()
        """Values of the release's secrets: masked in every message we write."""
        self.client: Any = None
        self.fresh_desired = False
        """Set when woken by a server event or SIGHUP: the next question to the
        server goes without the ETag, so no cached answer can hide a change."""
        if config.server is not None:
            # Managed mode: imported only when used, git-only devices never pay for it.
            from fleetcore.agent.managed import ServerClient

            self.client = ServerClient(config)
        logs.set_context(device_id=config.device_id, role=config.role)

    # -- entry points ------------------------------------------------------------

    def once(self) -> CycleResult:
        """One cycle: converge to the desired release if the gates allow it."""
        self.store.ensure()
        try:
            with exclusive_lock(self.store.lock_file):
                state = self.recover(self.store.load())
                logs.set_context(commit=self.store.commit_of(self.store.current()))
                result = self._cycle(state)
                if self.client is not None and result.outcome != "unreachable":
                    self.report()
                return result
        except FleetcoreError as exc:
            if exc.exit_code == 3:
                log.info("%s", exc)
                return CycleResult(outcome="locked", message=str(exc))
            raise

    def apply(self, fetched: Fetched, *, reason: str = "bundle") -> CycleResult:
        """Apply a release brought by hand (an offline bundle): the same
        verify, unpack, validate, activate and health steps, no gates."""
        self.store.ensure()
        with exclusive_lock(self.store.lock_file):
            state = self.recover(self.store.load())
            manifest = fetched.manifest
            if manifest.role != self.device.role:
                raise FleetcoreError(
                    f"the bundle is for role {manifest.role!r}, "
                    f"this device runs {self.device.role!r}"
                )
            if manifest.commit == self.store.commit_of(self.store.current()):
                return CycleResult(
                    outcome="converged",
                    commit=manifest.commit,
                    message=f"already running {manifest.commit[:12]}",
                )
            # role.toml is read from the release once it is unpacked and verified.
            return self._update(state, manifest.commit, reason, lambda _w: fetched, None)

    @functools.cached_property
    def strategies(self) -> RolloutStrategies:
        return RolloutStrategies(self.pm)

    # -- the cycle -----------------------------------------------------------------

    def source(self) -> Source:
        if self._source is None:
            if self.config.source is None:
                from fleetcore.agent.managed import ServerSource

                self._source = ServerSource(self.client)
                return self._source
            src = self.config.source
            record = self.pm.registry("fetcher").get(
                src.fetcher, where="source.fetcher", source=self.config_source
            )
            options = self.pm.options(
                record, src.options, where="source", source=self.config_source
            )
            cache = self.store.cache / record.name
            cache.mkdir(parents=True, exist_ok=True)
            settings = SourceSettings(repo=src.repo, branch=src.branch, cache_dir=cache)
            self._source = record.factory(settings, options)
        return self._source

    def desired(self, state: State | None = None) -> tuple[DesiredState, str]:
        """The desired state (from the server, or from the head of the configured
        branch), and the head it was computed for."""
        if self.client is not None:
            fresh, self.fresh_desired = self.fresh_desired, False
            desired = self._retry(
                "ask the server for the desired state", lambda: self.client.desired(fresh=fresh)
            )
            return self._double_check(desired), desired.commit or ""
        source = self.source()
        branch = self.config.source.branch if self.config.source else "main"
        head = self._retry("resolve the branch head", lambda: source.head(branch))
        device_file = f"devices/{self.device.device_id}.toml"
        # The role's config at the head comes along: most updates go to the head.
        files = self._retry(
            "read the fleet policy",
            lambda: source.read(head, ["fleet.toml", device_file, self._role_file]),
        )
        self._role_at_head = (head, files.get(self._role_file))
        at = f"@{head[:12]}"
        fleet = parse_fleet_policy(files.get("fleet.toml"), f"fleet.toml{at}")
        device_policy = parse_device_policy(files.get(device_file), f"{device_file}{at}")
        desired = resolve(
            device=self.device,
            fleet=fleet,
            device_policy=device_policy,
            head=head,
            now=self.clock.now(),
            eligible=self._eligibility(fleet, at),
            override_head=lambda branch: self._retry(
                f"resolve branch {branch}", lambda: source.head(branch)
            ),
        )
        return desired, head

    def _double_check(self, desired: DesiredState) -> DesiredState:
        """Managed mode: a rollout's commit is taken only if the same strategy
        plugin, run here, agrees that this device is eligible."""
        if desired.why != "rollout" or not desired.commit or not desired.rollout_strategy:
            return desired
        name = desired.rollout_strategy
        if name not in self.strategies:
            log.warning(
                "cannot double-check the server's %s rollout: the strategy is not installed here",
                name,
            )
            return desired
        strategy = self.strategies.get(
            name,
            desired.rollout_options or {},
            "rollout",
            name_where="rollout.strategy",
            source="the server's desired state",
        )
        if strategy.eligible(self.device, desired.commit):
            return desired
        reason = (
            f"the server named {desired.commit[:12]}, but by its {name} rollout "
            f"this device is not eligible; holding"
        )
        log.error("%s", reason)
        return attrs.evolve(desired, commit=None, why="hold", reason=reason)

    def _eligibility(self, fleet: FleetPolicy, at: str) -> Callable[[str, DeviceInfo, str], bool]:
        def eligible(name: str, device: DeviceInfo, commit: str) -> bool:
            where = "rollout" if device.role not in fleet.roles else f"roles.{device.role}.rollout"
            strategy = self.strategies.get(
                name,
                fleet.rollout_for(device.role).options,
                where,
                name_where=f"{where}.strategy",
                source=f"fleet.toml{at}",
            )
            return bool(strategy.eligible(device, commit))

        return eligible

    def _cycle(self, state: State) -> CycleResult:
        now = self.clock.now()
        current = self.store.current()
        current_commit = self.store.commit_of(current)
        self._network = state.network
        try:
            desired, head = self.desired(state)
        except FetchError as exc:
            state = self._unreachable(state, exc)
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
        state = self._reachable(state)
        state = self.store.update(
            state,
            last_check=now,
            desired_commit=desired.commit,
            desired_why=desired.why,
            desired_reason=desired.reason,
        )
        if state.mode == "safe_mode":
            if desired.resume > state.resume_seen:
                state = self.store.update(state, resume_seen=desired.resume)
                state = self._set_mode(state, "normal", "resumed from the control server")
            elif desired.why == "pin" and desired.commit != state.safe_mode_pin:
                state = self._set_mode(state, "normal", f"new forced version {desired.commit}")
            else:
                return CycleResult(
                    outcome="safe_mode",
                    commit=current_commit,
                    message=f"safe mode: {state.mode_reason}; `fleetcore agent resume` to leave it",
                )
        if desired.resume != state.resume_seen:
            # A resume given while the device was not in safe mode lifts nothing later.
            state = self.store.update(state, resume_seen=desired.resume)
        if desired.commit is None or desired.commit == current_commit:
            if state.pending_commit:
                state = self.store.update(state, pending_commit=None)
            if current_commit is None:
                return CycleResult(outcome="deferred", message=desired.reason or "nothing to run")
            if state.status != "healthy":
                state = self.recheck(state)
            if state.status != "healthy":
                return CycleResult(
                    outcome="failed",
                    commit=current_commit,
                    message=f"running {current_commit[:12]} but {state.status}: "
                    f"{state.status_reason}",
                )
            return CycleResult(
                outcome="converged",
                commit=current_commit,
                message=f"running {current_commit[:12]} ({desired.reason or desired.why})",
            )
        commit = desired.commit
        try:
            if self._role_at_head is not None and self._role_at_head[0] == commit:
                role_text = self._role_at_head[1]
            else:
                role_text = self.source().read(commit, [self._role_file]).get(self._role_file)
            role_cfg = parse_role_config(role_text, f"{self._role_file}@{commit[:12]}")
        except FetchError as exc:
            return CycleResult(outcome="unreachable", commit=current_commit, message=str(exc))
        except ConfigError as exc:
            return self._refuse(state, commit, current_commit, f"invalid role.toml: {exc}")
        deferred = throttle_gate(state, self.config.throttle, now)
        if deferred is None and role_cfg.requires_reboot:
            deferred = window_gate(desired.maintenance_window, now)
        if deferred is not None:
            return self._defer(state, commit, deferred)
        if state.pending_commit and state.pending_commit not in (commit, current_commit):
            self._record(
                None,
                state.pending_commit,
                "skipped",
                0.0,
                f"superseded by {commit[:12]} before it was deployed",
            )
        self._head_seen = head if desired.why != "override" else None
        return self._update(
            state,
            commit,
            desired.why,
            lambda work: self.source().fetch(commit, self.device.role, work),
            role_cfg,
        )

    @property
    def _role_file(self) -> str:
        return f"roles/{self.device.role}/role.toml"

    def _defer(self, state: State, commit: str, deferred: Deferred) -> CycleResult:
        self.store.update(state, pending_commit=commit)
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
        now = self.clock.now()
        self._record(current_commit, commit, "failed", 0.0, reason)
        self._count_failure(attrs.evolve(state, last_attempt=now), reason)
        return CycleResult(outcome="failed", commit=current_commit, message=reason)

    # -- one update ----------------------------------------------------------------

    def _update(
        self,
        state: State,
        commit: str,
        why: str,
        fetch: Callable[[Path], Fetched],
        role_cfg: RoleConfig | None,
    ) -> CycleResult:
        """Deploy ``commit``. ``role_cfg`` is None when the role's config is to
        be read from the release itself once verified (bundles)."""
        now = self.clock.now()
        started = self.clock.monotonic()
        name = release_name(self.device.role, commit)
        from_release = self.store.current()
        from_commit = self.store.commit_of(from_release)
        state = self.store.update(
            state,
            in_flight=InFlight(
                to_commit=commit,
                from_commit=from_commit,
                release=name,
                phase="fetch",
                started=now,
                reason=why,
                from_release=from_release,
                previous_release=self.store.previous(),
                status_before=state.status,
            ),
            last_attempt=now,
            recent_attempts=attempts_after(state, now),
            pending_commit=None,
        )
        logs.set_context(commit=commit)
        log.info(
            "updating %s -> %s (%s)",
            from_commit[:12] if from_commit else "nothing",
            commit[:12],
            why,
        )
        self.pm.notify(
            "fleetcore_update_started",
            event=UpdateStart(
                device=self.device, from_commit=from_commit, to_commit=commit, reason=why
            ),
        )
        try:
            state, release_dir, env, role_cfg = self._prepare(state, name, commit, fetch, role_cfg)
        except DiskFull as exc:
            return self._abandon(state, "skipped", str(exc), started)
        except (FleetcoreError, OSError) as exc:
            return self._abandon(state, "failed", str(exc), started)
        state = self._phase(state, "swap")
        self.store.point(self.store.previous_link, from_release)
        self.store.point(self.store.current_link, name)
        activator_name, activator = self._activator(release_dir, role_cfg)
        try:
            state = self._phase(state, "activate")
            if (
                from_release
                and state.current_activator
                and state.current_activator != activator_name
            ):
                # A role that changes activator: the old one takes its services down.
                _, old = self._activator(
                    self.store.release_dir(from_release), self._role_config_of(from_release)
                )
                old.stop(self._activation_ctx(from_release, self.store.commit_of(from_release)))
            activator.start(self._activation_ctx(name, commit, previous=from_release, env=env))
            state = self._phase(state, "health")
            self._wait_healthy(release_dir, commit, role_cfg, activator_name, env)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, FleetcoreError) else f"{type(exc).__name__}: {exc}"
            return self._rollback(state, reason, started, new_activator=activator_name)
        state = self.store.update(
            state,
            in_flight=None,
            status="healthy",
            status_reason="",
            consecutive_failures=0,
            current_activator=activator_name,
            previous_activator=state.current_activator,
        )
        # The light drift check's baseline: the release as it stands, activated.
        from fleetcore.agent.drift import write_snapshot

        write_snapshot(self.store.snapshot_file(name), release_dir)
        entry = self._record(from_commit, commit, "success", self.clock.monotonic() - started, why)
        state = self.store.update(state, last_update=entry)
        self._clean_releases()
        log.info("now running %s, healthy", commit[:12])
        # A bundle comes by hand to a device that may never reach the repo.
        pending = self._newer_commit(commit) if why != "bundle" else None
        if pending:
            state = self.store.update(state, pending_commit=pending)
            log.info("a newer commit %s is pending", pending[:12])
        return CycleResult(
            outcome="updated",
            commit=commit,
            pending_commit=pending,
            message=f"updated to {commit[:12]}, healthy",
        )

    def _prepare(
        self,
        state: State,
        name: str,
        commit: str,
        fetch: Callable[[Path], Fetched],
        role_cfg: RoleConfig | None,
    ) -> tuple[State, Path, dict[str, str], RoleConfig]:
        """Fetch, unpack, verify, add secrets and validate, all beside the
        running release. Returns the release folder, its environment and the
        role's config."""
        staging = self.store.staging
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self._ensure_space(self._current_size() * 2, "fetch")

        def attempt() -> Fetched:
            work = staging / "fetch"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            return fetch(work)

        fetched = self._retry("fetch the release", attempt)
        manifest = fetched.manifest
        if manifest.commit != commit or manifest.role != self.device.role:
            raise VerifyError(
                f"the fetched release is {manifest.role}@{manifest.commit[:12]}, "
                f"expected {self.device.role}@{commit[:12]}"
            )
        state = self._phase(state, "unpack")
        self._ensure_space(manifest.total_size, "unpack")
        tree = staging / "tree"
        unpacked = unpack(
            fetched.archive,
            tree,
            prefix=fetched.prefix,
            max_bytes=self.config.disk.max_release_size.bytes,
            git_blobs=manifest.wants_git_blob,
        )
        state = self._phase(state, "verify")
        ctx = self._check_ctx("verify", tree, commit, manifest, unpacked=unpacked)
        # Verify checks guard the device, not the role: a role cannot opt out.
        selected = runner.select(
            self.pm, "verify", CheckSelection(), ctx, source=self.config_source
        )
        if not selected:
            raise VerifyError(
                "no verify check is installed or enabled, so the release cannot be "
                "verified; install fleetcore-checks (see `fleetcore plugins`)"
            )
        failed = runner.failures(runner.run(selected, ctx))
        if failed:
            raise VerifyError(
                "release does not match its manifest: " + runner.describe_failures(failed)
            )
        release_dir = self.store.release_dir(name)
        if release_dir.exists():
            shutil.rmtree(release_dir)
        write_manifest(
            Manifest.from_unpacked(commit, self.device.role, unpacked),
            self.store.manifest_file(name),
        )
        tree.rename(release_dir)
        shutil.rmtree(staging, ignore_errors=True)
        if role_cfg is None:
            role_cfg = self._role_config_of(name, strict=True)
        state = self._phase(state, "secrets")
        env = self._secrets(release_dir, commit, role_cfg)
        # A role script that prints a secret must not put it in the history.
        self._secret_values = frozenset(v for v in env.values() if len(v) >= 4)
        state = self._phase(state, "validate")
        ctx = self._check_ctx("validate", release_dir, commit, manifest, env=env)
        selected = runner.select(
            self.pm, "validate", role_cfg.validate, ctx, source=f"{self._role_file}@{commit[:12]}"
        )
        failed = runner.failures(runner.run(selected, ctx))
        if failed:
            raise UpdateFailed("validation failed: " + runner.describe_failures(failed))
        return state, release_dir, env, role_cfg

    def _wait_healthy(
        self,
        release_dir: Path,
        commit: str,
        role_cfg: RoleConfig,
        activator_name: str,
        env: Mapping[str, str],
    ) -> None:
        health = role_cfg.health
        self.clock.sleep(health.settle.seconds)
        ctx = self._check_ctx(
            "health", release_dir, commit, None, env=env, activator=activator_name
        )
        selected = runner.select(
            self.pm, "health", health, ctx, source=f"{self._role_file}@{commit[:12]}"
        )
        for round_ in range(max(1, health.attempts)):
            failed = runner.failures(runner.run(selected, ctx))
            if not failed:
                return
            if round_ + 1 < health.attempts:
                self.clock.sleep(health.interval.seconds)
        raise Unhealthy("health checks failed: " + runner.describe_failures(failed))

    def _abandon(
        self, state: State, result: UpdateResult, reason: str, started: float
    ) -> CycleResult:
        """An update refused before the swap: clean up, keep what runs."""
        reason = self._redact(reason)
        flight = state.in_flight
        assert flight is not None
        shutil.rmtree(self.store.staging, ignore_errors=True)
        self._drop_release(flight.release)
        log.error(
            "update to %s %s: %s",
            flight.to_commit[:12],
            "skipped" if result == "skipped" else "refused",
            reason,
        )
        state = self.store.update(state, in_flight=None)
        entry = self._record(
            flight.from_commit, flight.to_commit, result, self.clock.monotonic() - started, reason
        )
        state = self.store.update(state, last_update=entry)
        if result == "failed":
            self._count_failure(state, reason)
        logs.set_context(commit=flight.from_commit)
        return CycleResult(
            outcome="failed",
            commit=flight.from_commit,
            message=f"update to {flight.to_commit[:12]} {result}: {reason}",
        )

    def _rollback(
        self, state: State, reason: str, started: float, *, new_activator: str | None = None
    ) -> CycleResult:
        """Swap back to the release that ran before, and start it again."""
        reason = self._redact(reason)
        flight = state.in_flight
        assert flight is not None
        log.error("update to %s failed, rolling back: %s", flight.to_commit[:12], reason)
        state = self._phase(state, "rollback")
        old = (
            flight.from_release
            if flight.from_release and self.store.release_dir(flight.from_release).is_dir()
            else None
        )
        new_dir = self.store.release_dir(flight.release)
        status: str = "failed"
        status_reason = f"update to {flight.to_commit[:12]} failed and nothing ran before it"
        if new_activator is None and new_dir.is_dir():
            new_activator, _ = self._activator(new_dir, self._role_config_of(flight.release))
        old_activator = state.current_activator
        if old is not None:
            self.store.point(self.store.current_link, old)
            self.store.point(self.store.previous_link, flight.previous_release)
            try:
                old_name, activator = self._activator(
                    self.store.release_dir(old), self._role_config_of(old)
                )
                if new_activator and new_activator != old_name and new_dir.is_dir():
                    self._stop_quietly(new_activator, flight.release, flight.to_commit)
                activator.start(self._activation_ctx(old, flight.from_commit or ""))
                old_activator = old_name
                role_cfg = self._role_config_of(old)
                self._wait_healthy(
                    self.store.release_dir(old),
                    flight.from_commit or "",
                    role_cfg,
                    old_name,
                    self._read_env(old),
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
                self._stop_quietly(new_activator, flight.release, flight.to_commit)
            self.store.point(self.store.current_link, None)
            self.store.point(self.store.previous_link, flight.previous_release)
        self._drop_release(flight.release)
        state = self.store.update(
            state,
            in_flight=None,
            status=status,
            status_reason=status_reason,
            current_activator=old_activator,
        )
        entry = self._record(
            flight.from_commit,
            flight.to_commit,
            "rollback",
            self.clock.monotonic() - started,
            reason,
        )
        state = self.store.update(state, last_update=entry)
        self._count_failure(state, reason)
        logs.set_context(commit=flight.from_commit)
        return CycleResult(
            outcome="rolled_back",
            commit=flight.from_commit,
            message=f"update to {flight.to_commit[:12]} rolled back: {reason}",
        )

    def _redact(self, text: str) -> str:
        for value in sorted(self._secret_values, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    def _stop_quietly(self, activator_name: str, release: str, commit: str) -> None:
        try:
            record = self.pm.registry("activator").get(
                activator_name, where="activate.plugin", source=self._role_file
            )
            impl = record.factory(
                self.pm.options(record, None, where="activate", source=self._role_file)
            )
            impl.stop(self._activation_ctx(release, commit))
        except Exception as exc:
            log.warning("could not stop %s: %s", release, exc)

    # -- managed mode -------------------------------------------------------------------

    def report(self) -> bool:
        """Send the status report and the history the server has not seen.
        Best effort: a server that does not answer gets it next time."""
        from fleetcore.agent.managed import status_report
        from fleetcore.agent.state import history_json
        from fleetcore.files import atomic_write

        if self.client is None:
            return False
        sent_file = self.store.cache / "server" / "history-sent"
        try:
            sent = int(sent_file.read_text()) if sent_file.exists() else 0
        except ValueError:
            sent = 0
        try:
            self.client.report_status(status_report(self))
            entries = self.store.history()
            self.client.send_history([history_json(e) for e in entries[sent:]])
            sent_file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(sent_file, str(len(entries)).encode())
            return True
        except (FleetcoreError, OSError) as exc:
            log.warning("could not report to the server: %s", exc)
            return False

    # -- network partitions -------------------------------------------------------

    def _unreachable(self, state: State, exc: Exception) -> State:
        """The repo did not answer: move through the seed's partition modes."""
        now = self.clock.now()
        since = state.unreachable_since or now
        state = self.store.update(state, unreachable_since=since, last_check=now)
        outage = (now - since).total_seconds()
        p = self.config.partition
        network: Network = "online"
        if outage >= p.airgapped_after.seconds:
            network = "airgapped"
        elif outage >= p.isolated_after.seconds:
            network = "isolated"
        elif outage >= p.disconnected_after.seconds:
            network = "disconnected"
        if network != state.network:
            state = self._set_network(
                state, network, f"fleet repo unreachable for {_human(outage)}: {exc}"
            )
        return state

    def _reachable(self, state: State) -> State:
        """The repo answered: end an outage, report it, and recover from it."""
        now = self.clock.now()
        if state.unreachable_since is None:
            return self.store.update(state, last_contact=now)
        outage = (now - state.unreachable_since).total_seconds()
        was = state.network
        state = self.store.update(state, unreachable_since=None, last_contact=now)
        if was == "online":
            return state  # a short partition: retried quietly, nothing to report
        self._record(
            None,
            None,
            "success",
            outage,
            f"fleet repo unreachable for {_human(outage)} ({was})",
            event="outage",
        )
        state = self._set_network(
            state, "online", f"fleet repo answers again after {_human(outage)}"
        )
        if was in ("isolated", "airgapped"):
            # Long partitions: the clock may have drifted (TLS and expiries
            # depend on it); after a permanent one, revalidate everything.
            from fleetcore.agent.drift import run_drift

            deep = was == "airgapped"
            result = run_drift(
                self, deep=deep, fix=self.config.drift.fix, only=None if deep else ("clock",)
            )
            state = self._after_drift(self.store.load(), result)
        return state

    def _set_network(self, state: State, network: Network, reason: str) -> State:
        old = state.network
        state = self.store.update(state, network=network, network_since=self.clock.now())
        self._network = network
        log.warning("network %s -> %s: %s", old, network, reason)
        self._record(
            None, None, "success", 0.0, f"network {old} -> {network}: {reason}", event="mode"
        )
        self.pm.notify(
            "fleetcore_mode_changed",
            change=ModeChange(device=self.device, old=old, new=network, reason=reason),
        )
        return state

    # -- drift ----------------------------------------------------------------------

    def check(self, *, deep: bool, fix: bool) -> DriftResult:
        """A drift run under the agent's lock: find, fix, re-check, record."""
        from fleetcore.agent.drift import run_drift

        self.store.ensure()
        with exclusive_lock(self.store.lock_file):
            self.recover(self.store.load())
            result = run_drift(self, deep=deep, fix=fix)
            self._after_drift(self.store.load(), result)
            if fix and any(f.code == "release-missing" for f in result.left):
                # Nothing to repair in place: install the desired release again.
                outcome = self._cycle(self.store.load())
                log.info("reinstall: %s", outcome.message)
            return result

    def _after_drift(self, state: State, result: DriftResult) -> State:
        from fleetcore.agent.drift import report

        now = self.clock.now()
        stamp = {"last_deep_check": now} if result.deep else {"last_light_check": now}
        summary = describe_drift(result)
        state = self.store.update(state, drift=result.verdict, drift_reason=summary, **stamp)
        if not result.findings:
            return state
        log.warning("drift (%s): %s", result.verdict, summary)
        self._record(
            result.commit,
            result.commit,
            "success" if result.verdict == "fixed" else "failed",
            0.0,
            summary,
            event="drift",
        )
        self.pm.notify("fleetcore_drift_found", report=report(self, result))
        failed = result.failed_fixes
        if failed and state.mode != "safe_mode":
            reasons = "; ".join(f"{f.fix}: {f.message}" for f in failed)
            state = self._set_mode(state, "safe_mode", f"self-heal failed: {reasons}")
        return state

    def recheck(self, state: State) -> State:
        """Run the current release's health checks now (no settle) and record
        the status they give."""
        current = self.store.current()
        if current is None:
            return state
        commit = self.store.commit_of(current) or ""
        role_cfg = self._role_config_of(current)
        role_cfg = attrs.evolve(
            role_cfg, health=attrs.evolve(role_cfg.health, settle=Duration(0), attempts=1)
        )
        try:
            name, _ = self._activator(self.store.release_dir(current), role_cfg)
            self._wait_healthy(
                self.store.release_dir(current), commit, role_cfg, name, self._read_env(current)
            )
        except FleetcoreError as exc:
            return self.store.update(state, status="degraded", status_reason=str(exc))
        return self.store.update(state, status="healthy", status_reason="")

    # -- crash recovery -------------------------------------------------------------

    def recover(self, state: State) -> State:
        """Finish or undo an update a crash interrupted. Called under the lock."""
        flight = state.in_flight
        if flight is None:
            if self.store.staging.exists() and any(self.store.staging.iterdir()):
                shutil.rmtree(self.store.staging, ignore_errors=True)
            return state
        log.warning(
            "the last update (to %s) was interrupted during %s; recovering",
            flight.to_commit[:12],
            flight.phase,
        )
        before_swap: tuple[Phase, ...] = ("fetch", "unpack", "verify", "secrets", "validate")
        if flight.phase in before_swap and self.store.current() == flight.from_release:
            # Nothing that runs was touched: drop the half-made release.
            shutil.rmtree(self.store.staging, ignore_errors=True)
            self._drop_release(flight.release)
            state = self.store.update(state, in_flight=None, status=flight.status_before)
            self._record(
                flight.from_commit,
                flight.to_commit,
                "failed",
                0.0,
                f"interrupted during {flight.phase}",
            )
            return state
        result = self._rollback(state, f"interrupted during {flight.phase}", self.clock.monotonic())
        log.warning("recovered: %s", result.message)
        return self.store.load()

    # -- helpers ---------------------------------------------------------------------

    def _phase(self, state: State, phase: Phase) -> State:
        assert state.in_flight is not None
        return self.store.update(state, in_flight=attrs.evolve(state.in_flight, phase=phase))

    def _count_failure(self, state: State, reason: str) -> State:
        failures = state.consecutive_failures + 1
        state = self.store.update(
            state, consecutive_failures=failures, last_failure=self.clock.now()
        )
        if failures >= self.config.throttle.max_failures and state.mode != "safe_mode":
            state = self._set_mode(
                state, "safe_mode", f"{failures} consecutive failed updates; last: {reason}"
            )
        return state

    def _set_mode(self, state: State, mode: Literal["normal", "safe_mode"], reason: str) -> State:
        old = state.mode
        pin = state.desired_commit if state.desired_why == "pin" else None
        changes: dict[str, object] = {
            "mode": mode,
            "mode_since": self.clock.now(),
            "mode_reason": reason,
        }
        if mode == "safe_mode":
            changes["safe_mode_pin"] = pin
        else:
            changes["consecutive_failures"] = 0
        state = self.store.update(state, **changes)
        log.warning("mode %s -> %s: %s", old, mode, reason)
        self.pm.notify(
            "fleetcore_mode_changed",
            change=ModeChange(device=self.device, old=old, new=mode, reason=reason),
        )
        return state

    def resume(self) -> State:
        """Leave safe mode (an operator's decision)."""
        self.store.ensure()
        with exclusive_lock(self.store.lock_file):
            state = self.store.load()
            if state.mode == "safe_mode":
                state = self._set_mode(state, "normal", "resumed by an operator")
            return state

    def _record(
        self,
        from_commit: str | None,
        to_commit: str | None,
        result: UpdateResult,
        duration: float,
        reason: str,
        *,
        event: str = "update",
    ) -> UpdateRecord:
        entry = UpdateRecord(
            timestamp=self.clock.now(),
            device_id=self.device.device_id,
            role=self.device.role,
            from_commit=from_commit,
            to_commit=to_commit,
            result=result,
            reason=reason,
            duration_seconds=round(duration, 3),
            event=event,
        )
        self.store.record(entry)
        if event == "update":
            self.pm.notify("fleetcore_update_finished", record=entry)
        return entry

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        retry = self.config.retry
        delay = retry.backoff.seconds
        # Cut off from the repo for a while: one try per cycle; the loop
        # spaces the cycles out (the seed's partition handling).
        attempts = retry.attempts if self._network == "online" else 1
        for attempt in range(1, max(1, attempts) + 1):
            try:
                return fn()
            except FetchError as exc:
                if attempt >= attempts:
                    raise
                # Jitter: a fleet that lost its network together must not
                # come back in lockstep.
                wait = min(delay, retry.max_backoff.seconds) * random.uniform(0.5, 1.0)  # noqa: S311
                log.warning(
                    "could not %s (attempt %d of %d), retrying in %.1fs: %s",
                    what,
                    attempt,
                    retry.attempts,
                    wait,
                    exc,
                )
                self.clock.sleep(wait)
                delay *= 2
        raise AssertionError("unreachable")

    def _newer_commit(self, deployed: str) -> str | None:
        """Skip-to-latest: a commit that became desired while we deployed."""
        try:
            if self.client is not None:
                desired = self.client.desired()
                return desired.commit if desired.commit not in (None, deployed) else None
            if (
                self._head_seen is not None
                and self.config.source is not None
                and self.source().head(self.config.source.branch) == self._head_seen
            ):
                return None  # nothing landed: the policy read at the start still holds
            desired, _ = self.desired()
        except (FleetcoreError, OSError):
            return None
        return desired.commit if desired.commit not in (None, deployed) else None

    def _activator(self, release_dir: Path, role_cfg: RoleConfig) -> tuple[str, ActivatorImpl]:
        registry = self.pm.registry("activator")
        source = self._role_file
        name = role_cfg.activate.plugin
        if name is None:
            for record in sorted(registry, key=lambda r: -r.priority):
                if record.detect is not None and record.detect(release_dir):
                    name = record.name
                    break
            else:
                raise UpdateFailed(
                    f"no activator fits {release_dir.name}: add docker-compose.yml or activate.sh, "
                    f"or name one in role.toml [activate] plugin; installed: "
                    f"{', '.join(registry.names()) or 'none'}"
                )
        record = registry.get(name, where="activate.plugin", source=source)
        options = self.pm.options(
            record, role_cfg.activate.options, where="activate", source=source
        )
        return name, record.factory(options)

    def _role_config_of(self, release: str, *, strict: bool = False) -> RoleConfig:
        """The role.toml of an unpacked release. ``strict``: an invalid one is
        an error (a release being prepared); otherwise the defaults, so a
        release that already runs can always be started again."""
        path = self.store.release_dir(release) / "role.toml"
        try:
            return parse_role_config(path.read_bytes() if path.exists() else None, str(path))
        except ConfigError as exc:
            if strict:
                raise
            log.warning("%s", exc)
            return RoleConfig()

    def _base_env(self, release_dir: Path, commit: str) -> dict[str, str]:
        return {
            "FLEETCORE_RELEASE_DIR": str(release_dir),
            "FLEETCORE_COMMIT": commit,
            "FLEETCORE_ROLE": self.device.role,
            "FLEETCORE_DEVICE_ID": self.device.device_id,
            "FLEETCORE_SEGMENT": self.device.segment,
            "FLEETCORE_STATE_DIR": str(self.store.root),
        }

    def _activation_ctx(
        self,
        release: str,
        commit: str | None,
        *,
        previous: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ActivationContext:
        release_dir = self.store.release_dir(release)
        full_env = {
            **(env if env is not None else self._read_env(release)),
            **self._base_env(release_dir, commit or ""),
        }
        return ActivationContext(
            device=self.device,
            release_dir=release_dir,
            commit=commit or "",
            env=full_env,
            project=project_name(self.device),
            previous_dir=self.store.release_dir(previous) if previous else None,
        )

    def _check_ctx(
        self,
        kind: Literal["verify", "validate", "health", "drift"],
        release_dir: Path,
        commit: str,
        manifest: Manifest | None,
        *,
        env: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> CheckContext:
        return CheckContext(
            kind=kind,
            device=self.device,
            release_dir=release_dir,
            commit=commit,
            manifest=manifest,
            options=None,
            log=log,
            env={**(env or {}), **self._base_env(release_dir, commit)},
            project=project_name(self.device),
            now=self.clock.now(),
            **extra,
        )

    def _secrets(self, release_dir: Path, commit: str, role_cfg: RoleConfig) -> dict[str, str]:
        registry = self.pm.registry("secrets provider")
        source = f"{self._role_file}@{commit[:12]}"
        names = role_cfg.secrets.providers
        if names is None:
            names = tuple(
                r.name for r in registry if r.detect is not None and r.detect(release_dir)
            )
        env: dict[str, str] = {}
        for name in names:
            record = registry.get(name, where="secrets.providers", source=source)
            # Device settings from agent.toml only; the role says what it wants.
            device_options = self.pm.options(
                record,
                self.config.secrets.get(name),
                where=f"secrets.{name}",
                source=self.config_source,
            )
            role_options = structure(
                dict(role_cfg.secrets.options.get(name) or {}),
                record.role_config_type,
                source=source,
                root=f"secrets.{name}",
            )
            ctx = SecretsContext(
                device=self.device,
                release_dir=release_dir,
                commit=commit,
                state_dir=self.store.root,
                role_options=role_options,
                server=self.client,
            )
            env.update(record.factory(device_options).provide(ctx))
        if env:
            _write_env(release_dir / ENV_FILE, env)
        return env

    def _read_env(self, release: str) -> dict[str, str]:
        path = self.store.release_dir(release) / ENV_FILE
        if not path.exists():
            return {}
        out = {}
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key and not key.startswith("#"):
                out[key] = value
        return out

    def _drop_release(self, name: str) -> None:
        if name in (self.store.current(), self.store.previous()):
            return
        self.store.remove_release(name)

    def _clean_releases(self, keep_extra: tuple[str, ...] = ()) -> list[str]:
        keep = {self.store.current(), self.store.previous(), *keep_extra}
        removed = []
        for name in self.store.release_names():
            if name not in keep:
                self.store.remove_release(name)
                removed.append(name)
        return removed

    def _current_size(self) -> int:
        current = self.store.current()
        if current is None:
            return 0
        try:
            from fleetcore.release import read_manifest

            return read_manifest(self.store.manifest_file(current)).total_size
        except (FleetcoreError, OSError, ValueError):
            return 0

    def _ensure_space(self, needed: int, step: str) -> None:
        reserve = self.config.disk.reserve.bytes
        free = shutil.disk_usage(self.store.root).free
        if free >= needed + reserve:
            return
        removed = self._clean_releases()
        if removed:
            log.info("cleaned old releases to make room: %s", ", ".join(removed))
        free = shutil.disk_usage(self.store.root).free
        if free < needed + reserve:
            raise DiskFull(
                f"disk full: the {step} needs {needed + reserve} bytes free "
                f"({needed} + reserve {reserve}), {free} are free"
            )


def _write_env(path: Path, env: Mapping[str, str]) -> None:
    from fleetcore.files import atomic_write

    for key, value in env.items():
        if "\n" in value or "\n" in key:
            raise UpdateFailed(f"secret {key!r} holds a newline, which env files cannot carry")
    atomic_write(path, "".join(f"{k}={v}\n" for k, v in env.items()).encode(), mode=0o600)


def describe_drift(result: DriftResult) -> str:
    """One line: what drifted, and what the fixes did."""
    if not result.findings:
        return "no drift"
    found = "; ".join(str(f) for f in result.findings[:5])
    more = f" (+{len(result.findings) - 5} more)" if len(result.findings) > 5 else ""
    fixes = "; ".join(
        f"{f.fix} {'held' if f.held else 'failed'}: {f.message}" for f in result.fixes
    )
    return f"{found}{more}" + (f" | fixes: {fixes}" if fixes else "")


def _human(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds:.0f}s"
