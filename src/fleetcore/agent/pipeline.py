"""The update pipeline of one release::

    fetch -> unpack+verify -> secrets -> validate -> swap links -> activate
          -> settle -> health -> keep | roll back -> record

Every step before the swap works on copies: a failure there leaves the
running release untouched. From the swap on, any failure (or a crash, found
by the next run through ``state.in_flight``) swaps back to the previous
release and starts it again.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from fleetcore.activate.interface import ENV_FILE
from fleetcore.activate.select import select_activator
from fleetcore.agent import logs
from fleetcore.agent.context import AgentContext
from fleetcore.agent.contexts import activation_ctx, check_ctx
from fleetcore.agent.disk import download_size, ensure_space, free_fetch_cache, out_of_space
from fleetcore.agent.gates import attempts_after
from fleetcore.agent.health import wait_healthy
from fleetcore.agent.journal import Journal
from fleetcore.agent.releases import (
    clean_releases,
    read_env,
    role_config_of,
    write_env,
    write_snapshot,
)
from fleetcore.agent.results import CycleResult, DiskFull, UpdateFailed
from fleetcore.agent.retry import retry
from fleetcore.agent.rollback import Rollback
from fleetcore.agent.state import InFlight, State, release_name
from fleetcore.agent.verification import verify_release
from fleetcore.checks import runner
from fleetcore.config.role import RoleConfig
from fleetcore.errors import FleetcoreError, VerifyError
from fleetcore.fetch.interface import Fetched
from fleetcore.plugin.types import UpdateStart
from fleetcore.release import Manifest, unpack, write_manifest
from fleetcore.secrets.interface import SecretsContext
from fleetcore.secrets.select import select_providers

log = logging.getLogger("fleetcore.agent")


class Pipeline:
    """Deploys one release, from fetch to a healthy activation or a rollback."""

    def __init__(self, ctx: AgentContext, journal: Journal, rollback: Rollback) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.journal = journal
        self.rollback = rollback

    def deploy(
        self,
        state: State,
        commit: str,
        why: str,
        fetch: Callable[[Path], Fetched],
        role_cfg: RoleConfig | None,
        *,
        signed_bundle: bool = False,
    ) -> CycleResult:
        """Deploy ``commit``. ``role_cfg`` is None when the role's config is to
        be read from the release itself once verified (bundles);
        ``signed_bundle``: a bundle whose signature the agent checked, so
        the commit signature check does not run (it has no commit objects)."""
        ctx, store = self.ctx, self.store
        now = ctx.clock.now()
        started = ctx.clock.monotonic()
        name = release_name(ctx.device.role, commit)
        from_release = store.current()
        from_commit = store.commit_of(from_release)
        flight = InFlight(
            to_commit=commit,
            from_commit=from_commit,
            release=name,
            phase="fetch",
            started=now,
            reason=why,
            from_release=from_release,
            previous_release=store.previous(),
            status_before=state.status,
        )
        state = self.journal.begin(state, flight, attempts_after(state, now))
        logs.set_context(commit=commit)
        log.info(
            "updating %s -> %s (%s)",
            from_commit[:12] if from_commit else "nothing",
            commit[:12],
            why,
        )
        ctx.pm.notify(
            "fleetcore_update_started",
            event=UpdateStart(
                device=ctx.device, from_commit=from_commit, to_commit=commit, reason=why
            ),
        )
        try:
            state, release_dir, env, role_cfg = self.prepare(
                state, name, commit, fetch, role_cfg, signed_bundle=signed_bundle
            )
        except DiskFull as exc:
            return self.rollback.abandon(state, "skipped", str(exc), started)
        except (FleetcoreError, OSError) as exc:
            return self.rollback.abandon(state, "failed", str(exc), started)
        state = self.journal.phase(state, "swap")
        store.point(store.previous_link, from_release)
        store.point(store.current_link, name)
        activator_name, activator = select_activator(
            ctx.pm, release_dir, role_cfg, source=ctx.role_file
        )
        try:
            state = self.journal.phase(state, "activate")
            if (
                from_release
                and state.current_activator
                and state.current_activator != activator_name
            ):
                # A role that changes activator: the old one takes its services down.
                _, old = select_activator(
                    ctx.pm,
                    store.release_dir(from_release),
                    role_config_of(store, from_release),
                    source=ctx.role_file,
                )
                old.stop(activation_ctx(ctx, from_release, store.commit_of(from_release)))
            activator.start(activation_ctx(ctx, name, commit, previous=from_release, env=env))
            if role_cfg.requires_reboot and ctx.config.reboot.command:
                # Written first: after the reboot, recovery finds the update
                # here and checks its health instead of undoing it.
                state = self.journal.phase(state, "reboot")
                reboot(ctx.config.reboot.command)
                log.info("rebooting for %s; its health is checked after the reboot", commit[:12])
                return CycleResult(
                    outcome="rebooting",
                    commit=from_commit,
                    pending_commit=commit,
                    message=f"activated {commit[:12]}; rebooting, health checked after",
                )
            state = self.journal.phase(state, "health")
            wait_healthy(ctx, release_dir, commit, role_cfg, activator_name, env)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, FleetcoreError) else f"{type(exc).__name__}: {exc}"
            return self.rollback.roll_back(state, reason, started, new_activator=activator_name)
        return self.finish(state, from_commit, commit, why, activator_name, started)

    def finish(
        self,
        state: State,
        from_commit: str | None,
        commit: str,
        why: str,
        activator_name: str,
        started: float,
    ) -> CycleResult:
        """The update is healthy: record it, take the drift baseline, clean up."""
        ctx, store = self.ctx, self.store
        name = release_name(ctx.device.role, commit)
        entry = self.journal.entry(
            from_commit, commit, "success", ctx.clock.monotonic() - started, why
        )
        # One write ends the update: nothing is in flight, the entry is the last update.
        state = self.journal.deployed(state, activator_name, entry)
        # The light drift check's baseline: the release as it stands, activated.
        write_snapshot(store.snapshot_file(name), store.release_dir(name))
        self.journal.append(entry)
        clean_releases(store)
        log.info("now running %s, healthy", commit[:12])
        return CycleResult(
            outcome="updated", commit=commit, message=f"updated to {commit[:12]}, healthy"
        )

    def after_reboot(self, state: State) -> State:
        """The device rebooted for an update (or the agent restarted while it
        waited for the reboot): check the release's health now, keep it or
        roll back, as the update would have without the reboot."""
        ctx, store = self.ctx, self.store
        flight = state.in_flight
        assert flight is not None
        started = ctx.clock.monotonic()
        name = flight.release
        commit = flight.to_commit
        release_dir = store.release_dir(name)
        log.info("back after the reboot for %s: checking its health", commit[:12])
        activator_name = ""
        try:
            role_cfg = role_config_of(store, name)
            activator_name, _ = select_activator(
                ctx.pm, release_dir, role_cfg, source=ctx.role_file
            )
            env = read_env(store, name)
            state = self.journal.phase(state, "health")
            wait_healthy(ctx, release_dir, commit, role_cfg, activator_name, env)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, FleetcoreError) else f"{type(exc).__name__}: {exc}"
            self.rollback.roll_back(
                state, f"after the reboot: {reason}", started, new_activator=activator_name
            )
            return self.journal.load()
        self.finish(state, flight.from_commit, commit, flight.reason, activator_name, started)
        return self.journal.load()

    def prepare(
        self,
        state: State,
        name: str,
        commit: str,
        fetch: Callable[[Path], Fetched],
        role_cfg: RoleConfig | None,
        *,
        signed_bundle: bool = False,
    ) -> tuple[State, Path, dict[str, str], RoleConfig]:
        """Fetch, unpack, verify, add secrets and validate, all beside the
        running release. Returns the release folder, its environment and the
        role's config."""
        ctx, store = self.ctx, self.store
        disk = ctx.config.disk
        staging = store.staging
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        running = store.commit_of(store.current())
        # A bundle (no role config yet) brings its archive by hand: no source.
        fresh_fetch = role_cfg is not None

        def free_cache() -> None:
            free_fetch_cache(ctx, keep=(running, commit))

        # The download and the tree unpacked from it (the seed's 2x).
        needed = 2 * download_size(ctx, commit) if fresh_fetch else 0
        ensure_space(store, needed, disk.reserve.bytes, "fetch", free_cache)

        def attempt() -> Fetched:
            work = staging / "fetch"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            return fetch(work)

        try:
            fetched = retry(ctx, "fetch the release", attempt)
        except (FleetcoreError, OSError) as exc:
            if not out_of_space(exc):
                raise
            # What a fetch that filled the disk left behind is given back.
            shutil.rmtree(staging, ignore_errors=True)
            free_fetch_cache(ctx, keep=(running,))
            raise DiskFull(f"disk full while fetching {commit[:12]}: {exc}") from None
        manifest = fetched.manifest
        if manifest.commit != commit or manifest.role != ctx.device.role:
            raise VerifyError(
                f"the fetched release is {manifest.role}@{manifest.commit[:12]}, "
                f"expected {ctx.device.role}@{commit[:12]}"
            )
        # Until validation, a crash is undone the same way whatever the step
        # (the half-made release is dropped): these phases are not written.
        state = self.journal.phase(state, "unpack", durable=False)
        ensure_space(store, manifest.total_size, disk.reserve.bytes, "unpack", free_cache)
        tree = staging / "tree"
        try:
            unpacked = unpack(
                fetched.archive,
                tree,
                prefix=fetched.prefix,
                max_bytes=disk.max_release_size.bytes,
                git_blobs=manifest.wants_git_blob,
                progress=ctx.progress(f"unpack {commit[:12]}", manifest.total_size)
                if ctx.progress
                else None,
            )
        except FleetcoreError:
            # A download that does not unpack is never offered again.
            if fresh_fetch:
                free_fetch_cache(ctx, keep=(running,))
            raise
        state = self.journal.phase(state, "verify", durable=False)
        try:
            verify_release(ctx, tree, commit, manifest, unpacked, signed_bundle=signed_bundle)
        except VerifyError:
            if fresh_fetch:  # a download that does not verify is never offered again
                free_fetch_cache(ctx, keep=(running,))
            raise
        release_dir = store.release_dir(name)
        if release_dir.exists():
            shutil.rmtree(release_dir)
        write_manifest(
            Manifest.from_unpacked(commit, ctx.device.role, unpacked), store.manifest_file(name)
        )
        tree.rename(release_dir)
        shutil.rmtree(staging, ignore_errors=True)
        if role_cfg is None:
            role_cfg = role_config_of(store, name, strict=True)
        state = self.journal.phase(state, "secrets", durable=False)
        env = self.secrets(release_dir, commit, role_cfg)
        # A role script that prints a secret must not put it in the history.
        ctx.secret_values = frozenset(v for v in env.values() if len(v) >= 4)
        state = self.journal.phase(state, "validate")
        context = check_ctx(ctx, "validate", release_dir, commit, manifest, env=env)
        selected = runner.select(
            ctx.pm, "validate", role_cfg.validate, context, source=f"{ctx.role_file}@{commit[:12]}"
        )
        failed = runner.failures(runner.run(selected, context))
        if failed:
            raise UpdateFailed("validation failed: " + runner.describe_failures(failed))
        return state, release_dir, env, role_cfg

    def secrets(self, release_dir: Path, commit: str, role_cfg: RoleConfig) -> dict[str, str]:
        """The role's secrets providers put their files into the release and
        give environment values, written to its env file."""
        ctx = self.ctx
        selected = select_providers(
            ctx.pm,
            release_dir,
            role_cfg,
            ctx.config.secrets,
            role_source=f"{ctx.role_file}@{commit[:12]}",
            device_source=ctx.config_source,
        )
        env: dict[str, str] = {}
        for provider in selected:
            context = SecretsContext(
                device=ctx.device,
                release_dir=release_dir,
                commit=commit,
                state_dir=ctx.store.root,
                role_options=provider.role_options,
                server=ctx.client,
            )
            env.update(provider.provider.provide(context))
        if env:
            write_env(release_dir / ENV_FILE, env)
        return env


def reboot(command: tuple[str, ...]) -> None:
    """Run the configured reboot command. It may not return (the device goes
    down); if it fails, the update is rolled back like any failed activation."""
    import subprocess

    try:
        done = subprocess.run(list(command), capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpdateFailed(f"the reboot command {' '.join(command)} failed: {exc}") from None
    if done.returncode != 0:
        raise UpdateFailed(
            f"the reboot command {' '.join(command)} failed "
            f"(exit {done.returncode}): {done.stderr.strip()[-300:]}"
        )
