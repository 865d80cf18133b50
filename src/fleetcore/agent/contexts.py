"""The contexts the agent hands to plugins: activators, checks and their
common environment (``FLEETCORE_*``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from fleetcore.activate.interface import ActivationContext, project_name
from fleetcore.agent.context import AgentContext
from fleetcore.agent.releases import read_env
from fleetcore.plugin.types import CheckContext
from fleetcore.release import Manifest

log = logging.getLogger("fleetcore.agent")


def base_env(ctx: AgentContext, release_dir: Path, commit: str) -> dict[str, str]:
    return {
        "FLEETCORE_RELEASE_DIR": str(release_dir),
        "FLEETCORE_COMMIT": commit,
        "FLEETCORE_ROLE": ctx.device.role,
        "FLEETCORE_DEVICE_ID": ctx.device.device_id,
        "FLEETCORE_SEGMENT": ctx.device.segment,
        "FLEETCORE_STATE_DIR": str(ctx.store.root),
    }


def activation_ctx(
    ctx: AgentContext,
    release: str,
    commit: str | None,
    *,
    previous: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ActivationContext:
    """What an activator gets to start or stop ``release``; ``env`` defaults
    to the release's env file."""
    release_dir = ctx.store.release_dir(release)
    full_env = {
        **(env if env is not None else read_env(ctx.store, release)),
        **base_env(ctx, release_dir, commit or ""),
    }
    return ActivationContext(
        device=ctx.device,
        release_dir=release_dir,
        commit=commit or "",
        env=full_env,
        project=project_name(ctx.device),
        previous_dir=ctx.store.release_dir(previous) if previous else None,
    )


def check_ctx(
    ctx: AgentContext,
    kind: Literal["verify", "validate", "health", "drift"],
    release_dir: Path,
    commit: str,
    manifest: Manifest | None,
    *,
    env: Mapping[str, str] | None = None,
    **extra: Any,
) -> CheckContext:
    """What a check of ``kind`` gets for a release."""
    return CheckContext(
        kind=kind,
        device=ctx.device,
        release_dir=release_dir,
        commit=commit,
        manifest=manifest,
        options=None,
        log=log,
        env={**(env or {}), **base_env(ctx, release_dir, commit)},
        project=project_name(ctx.device),
        now=ctx.clock.now(),
        **extra,
    )
