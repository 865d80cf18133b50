"""The verify step of the pipeline: the unpacked release against its
manifest, and whatever else the device's ``agent.toml`` asks of every
release ([verify.NAME] checks, e.g. a signature)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetcore.agent.context import AgentContext
from fleetcore.agent.contexts import check_ctx
from fleetcore.agent.protection import commit_proof
from fleetcore.checks import runner
from fleetcore.config.role import CheckSelection
from fleetcore.errors import VerifyError
from fleetcore.release import Manifest


def verify_release(
    ctx: AgentContext,
    tree: Path,
    commit: str,
    manifest: Manifest,
    unpacked: Any,
    *,
    signed_bundle: bool = False,
) -> None:
    """Run the verify checks on ``tree``; a VerifyError names what failed.

    A bundle whose signature was checked when it was opened does not ask
    its source for the commit's objects again (it has none)."""
    verify_options = dict(ctx.config.verify.checks)
    if signed_bundle:
        verify_options.pop("signature", None)
    proof = commit_proof(ctx.source(), commit, ctx.device.role) if verify_options else None
    context = check_ctx(ctx, "verify", tree, commit, manifest, unpacked=unpacked, proof=proof)
    # Verify checks guard the device, not the role: a role cannot opt
    # out; the device's agent.toml may add some ([verify.NAME]).
    selected = runner.select(
        ctx.pm,
        "verify",
        CheckSelection(options=verify_options),
        context,
        source=ctx.config_source,
    )
    if not selected:
        raise VerifyError(
            "no verify check is installed or enabled, so the release cannot be "
            "verified; install fleetcore-checks (see `fleetcore plugins`)"
        )
    failed = runner.failures(runner.run(selected, context))
    if failed:
        raise VerifyError(
            "release does not match its manifest: " + runner.describe_failures(failed)
        )
