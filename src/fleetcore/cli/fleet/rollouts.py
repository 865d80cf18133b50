"""``fleetcore fleet rollout ...``: start and steer staged rollouts."""

from __future__ import annotations

import json
from typing import Any

import click

from fleetcore.cli.app import App
from fleetcore.cli.fleet.common import JSON_OPT, client, rollout_line
from fleetcore.cli.fleet.complete import complete_roles, complete_rollouts
from fleetcore.cli.fleet.group import fleet


@fleet.group()
def rollout() -> None:
    """Start and steer staged rollouts."""


def _steps(strategy: str, text: str, wait: float) -> list[dict[str, Any]]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    if strategy == "percentage":
        if not all(s.isdigit() for s in items):
            raise click.BadParameter("percentage steps are whole numbers: 1,5,25,100")
        return [{"options": {"percent": int(s)}, "wait_seconds": wait} for s in items]
    if strategy == "canary":
        return [
            {"options": {"segments": items[: i + 1]}, "wait_seconds": wait}
            for i in range(len(items))
        ]
    raise click.BadParameter(f"--steps is for percentage and canary; use --option for {strategy}")


@rollout.command("start")
@click.argument("commit")
@click.option("--strategy", required=True, help="A rollout-strategy plugin: canary, percentage...")
@click.option("--role", shell_complete=complete_roles, help="Only this role [default: every role].")
@click.option("--steps", help="percentage: 1,5,25,100; canary: canary,early,general.")
@click.option("--wait", default="5m", show_default=True, help="Wait at each step before promotion.")
@click.option(
    "--threshold",
    type=float,
    default=0.2,
    show_default=True,
    help="Share of failed devices in a step that halts the rollout.",
)
@click.option("--manual", is_flag=True, help="Promote by hand only.")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="A strategy option for a one-step rollout (VALUE is JSON or text).",
)
@click.option("--reason", default="", help="Why (for the audit log).")
@JSON_OPT
def rollout_start(
    commit: str,
    strategy: str,
    role: str | None,
    steps: str | None,
    wait: str,
    threshold: float,
    manual: bool,
    options: tuple[str, ...],
    reason: str,
    as_json: bool,
) -> None:
    """Roll COMMIT out step by step."""
    from fleetcore.config.units import Duration

    try:
        wait_seconds = Duration.parse(wait).seconds
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wait") from None
    body: dict[str, Any] = {
        "commit": commit,
        "strategy": strategy,
        "role": role,
        "wait_seconds": wait_seconds,
        "threshold": threshold,
        "auto_promote": not manual,
        "reason": reason,
    }
    if steps:
        body["steps"] = _steps(strategy, steps, wait_seconds)
    elif options:
        parsed: dict[str, Any] = {}
        for item in options:
            key, sep, value = item.partition("=")
            if not sep:
                raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
            try:
                parsed[key] = json.loads(value)
            except ValueError:
                parsed[key] = value
        body["steps"] = [{"options": parsed, "wait_seconds": wait_seconds}]
    data = client().call("POST", "/v1/rollouts", body)
    if as_json:
        App.print_json(data)
    else:
        rollout_line(data)


def _action(action: str) -> click.Command:
    @click.argument("rollout_id", type=int, shell_complete=complete_rollouts)
    @click.option("--reason", default="", help="Why (for the audit log).")
    @JSON_OPT
    def command(rollout_id: int, reason: str, as_json: bool) -> None:
        data = client().call("POST", f"/v1/rollouts/{rollout_id}/{action}", {"reason": reason})
        if as_json:
            App.print_json(data)
        else:
            rollout_line(data)

    command.__doc__ = {
        "promote": "Move a rollout to its next step now.",
        "halt": "Stop promoting a rollout; devices keep what they run.",
        "resume": "Resume a halted rollout.",
        "abort": "End a rollout; its devices go back to the stable commit.",
    }[action]
    return rollout.command(action)(command)


for _name in ("promote", "halt", "resume", "abort"):
    _action(_name)


@rollout.command("list")
@JSON_OPT
def rollout_list(as_json: bool) -> None:
    """Recent rollouts, newest first."""
    data = client().call("GET", "/v1/rollouts")["rollouts"]
    if as_json:
        App.print_json(data)
        return
    for r in data:
        rollout_line(r)


@rollout.command("show")
@click.argument("rollout_id", type=int, shell_complete=complete_rollouts)
@JSON_OPT
def rollout_show(rollout_id: int, as_json: bool) -> None:
    """One rollout: progress per step and every decision."""
    r = client().call("GET", f"/v1/rollouts/{rollout_id}")
    if as_json:
        App.print_json(r)
        return
    rollout_line(r)
    for p in r["progress"]:
        click.echo(
            f"  step {p['step'] + 1} {json.dumps(p['options'])}: targeted {p['targeted']} "
            f"updated {p['updated']} healthy {p['healthy']} failed {p['failed']}"
        )
    for d in r["decisions"]:
        click.echo(f"  {d['at']} {d['action']} step {d['step'] + 1}: {d['detail']}")
