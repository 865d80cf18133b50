"""Health checks of an activated release: after the settle time, in rounds,
and on demand for the release that runs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import attrs

from fleetcore.activate.select import select_activator
from fleetcore.agent.context import AgentContext
from fleetcore.agent.contexts import check_ctx
from fleetcore.agent.journal import Journal
from fleetcore.agent.releases import read_env, role_config_of
from fleetcore.agent.results import Unhealthy
from fleetcore.agent.state import State
from fleetcore.checks import runner
from fleetcore.config.role import RoleConfig
from fleetcore.config.units import Duration
from fleetcore.errors import FleetcoreError

log = logging.getLogger("fleetcore.agent")


def wait_healthy(
    ctx: AgentContext,
    release_dir: Path,
    commit: str,
    role_cfg: RoleConfig,
    activator: str,
    env: Mapping[str, str],
    *,
    after_activation: bool = True,
) -> None:
    """Let the release settle, then run its health checks up to ``attempts``
    rounds; raise Unhealthy if the last round fails."""
    health = role_cfg.health
    activated_at = ctx.clock.now() if after_activation else None
    ctx.clock.sleep(health.settle.seconds)
    context = check_ctx(
        ctx,
        "health",
        release_dir,
        commit,
        None,
        env=env,
        activator=activator,
        activated_at=activated_at,
    )
    selected = runner.select(
        ctx.pm, "health", health, context, source=f"{ctx.role_file}@{commit[:12]}"
    )
    for round_ in range(max(1, health.attempts)):
        failed = runner.failures(runner.run(selected, context))
        if not failed:
            return
        if round_ + 1 < health.attempts:
            ctx.clock.sleep(health.interval.seconds)
    raise Unhealthy("health checks failed: " + runner.describe_failures(failed))


def recheck(ctx: AgentContext, journal: Journal, state: State) -> State:
    """Run the current release's health checks now (no settle) and record
    the status they give."""
    store = ctx.store
    current = store.current()
    if current is None:
        return state
    commit = store.commit_of(current) or ""
    role_cfg = role_config_of(store, current)
    role_cfg = attrs.evolve(
        role_cfg, health=attrs.evolve(role_cfg.health, settle=Duration(0), attempts=1)
    )
    release_dir = store.release_dir(current)
    try:
        name, _ = select_activator(ctx.pm, release_dir, role_cfg, source=ctx.role_file)
        wait_healthy(
            ctx,
            release_dir,
            commit,
            role_cfg,
            name,
            read_env(store, current),
            after_activation=False,
        )
    except FleetcoreError as exc:
        # The release that runs no longer passes its checks: a service is
        # down (CRITICAL, as the seed's log levels have it).
        log.critical("service down: %s", exc)
        return journal.status(state, "degraded", str(exc))
    return journal.status(state, "healthy", "")
