"""``fleetcore fleet branch-status``: may a branch be merged into ``main``?

The staging workflow: some devices follow ``staging`` (``fleetcore fleet
override DEVICE --branch staging``); a push there reaches them first. A CI
job or a person merging into ``main`` asks whether every one of them runs the
branch head and has been healthy on it for long enough.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from fleetcore.cli.app import App
from fleetcore.cli.fleet.common import JSON_OPT, client, short
from fleetcore.cli.fleet.group import fleet


def readiness(
    group: dict[str, Any] | None, branch: str, hold: float, now: dt.datetime
) -> list[str]:
    """Why ``branch`` is not ready yet, one reason per line; empty when ready."""
    if group is None or not group["devices"]:
        return [f"no device follows branch {branch}"]
    if group["head"] is None:
        return [f"branch {branch} is not in the server's mirror of the fleet repo"]
    reasons = []
    for d in group["devices"]:
        since = d["healthy_on_head_since"]
        if not d["on_head"]:
            reasons.append(
                f"{d['device_id']}: runs {short(d['commit'])}, not the head {short(group['head'])}"
            )
        elif since is None:
            reasons.append(f"{d['device_id']}: on the head but {d['status']}")
        else:
            healthy_for = (now - dt.datetime.fromisoformat(since)).total_seconds()
            if healthy_for < hold:
                reasons.append(
                    f"{d['device_id']}: healthy on the head for {int(healthy_for)}s of {int(hold)}s"
                )
    return reasons


def branch_lines(branches: dict[str, Any]) -> None:
    """The branch groups for ``fleetcore fleet status``."""
    for name, group in sorted(branches.items()):
        health = ", ".join(f"{s} {n}" for s, n in sorted(group["health"].items()))
        on_head = sum(d["on_head"] for d in group["devices"])
        click.echo(
            f"branch {name} at {short(group['head'])}: {len(group['devices'])} device(s), "
            f"{on_head} on the head ({health})"
        )


@fleet.command("branch-status")
@click.argument("branch")
@click.option(
    "--for",
    "hold",
    default="0s",
    show_default=True,
    metavar="DURATION",
    help="How long each device must have been healthy on the head ('10m', '1h').",
)
@JSON_OPT
def branch_status(branch: str, hold: str, as_json: bool) -> None:
    """Whether every device following BRANCH runs its head, healthy for --for.

    Exit 0 when ready (merge away), 1 when not yet, with the reasons.
    """
    from fleetcore.config.units import Duration

    try:
        seconds = Duration.parse(hold).seconds
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    group = client().call("GET", "/v1/fleet/status").get("branches", {}).get(branch)
    reasons = readiness(group, branch, seconds, dt.datetime.now(dt.UTC))
    if as_json:
        App.print_json(
            {
                "branch": branch,
                "ready": not reasons,
                "reasons": reasons,
                "head": group["head"] if group else None,
                "devices": group["devices"] if group else [],
            }
        )
    elif reasons:
        click.echo(f"branch {branch} is not ready:")
        for reason in reasons:
            click.echo(f"  {reason}")
    else:
        assert group is not None  # no reasons: the branch has devices
        click.echo(
            f"branch {branch} is ready: {len(group['devices'])} device(s) healthy on "
            f"{short(group['head'])}"
        )
    raise click.exceptions.Exit(1 if reasons else 0)
