"""``fleetcore fleet blast-radius | incidents | incident | halt-all |
resume-all``: blast-radius protection, its incidents and the fleet-wide
emergency controls."""

from __future__ import annotations

from typing import Any

import click

from fleetcore.cli.app import App
from fleetcore.cli.fleet.common import JSON_OPT, client, short
from fleetcore.cli.fleet.group import fleet


def _duration(_ctx: Any, _param: Any, value: str | None) -> float | None:
    if value is None:
        return None
    from fleetcore.config.units import Duration

    try:
        return float(Duration.parse(value).seconds)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _rate(value: float) -> str:
    return f"{value:.0%}"


@fleet.command("blast-radius")
@click.option("--warning", type=float, help="Share failing that holds rollouts (0.05).")
@click.option("--critical", type=float, help="Share failing that halts the suspect (0.10).")
@click.option("--emergency", type=float, help="Share failing that halts all and pins (0.20).")
@click.option("--window", callback=_duration, help="The sliding window (5m).")
@click.option("--min-devices", type=int, help="Fewer failing devices never count (5).")
@click.option("--reason", default="", help="Why (for the audit log).")
@JSON_OPT
def blast_radius(
    warning: float | None,
    critical: float | None,
    emergency: float | None,
    window: float | None,
    min_devices: int | None,
    reason: str,
    as_json: bool,
) -> None:
    """Show the blast-radius thresholds, or change them (admin)."""
    body = {
        "warning": warning,
        "critical": critical,
        "emergency": emergency,
        "window_seconds": window,
        "min_devices": min_devices,
    }
    given = {k: v for k, v in body.items() if v is not None}
    if given:
        data = client().call("PUT", "/v1/fleet/blast-radius", {**given, "reason": reason})
    else:
        data = client().call("GET", "/v1/fleet/blast-radius")
    if as_json:
        App.print_json(data)
        return
    click.echo(
        f"warning > {_rate(data['warning'])}, critical > {_rate(data['critical'])}, "
        f"emergency > {_rate(data['emergency'])} of a scope's devices failing "
        f"within {data['window_seconds']:g}s (at least {data['min_devices']} devices)"
    )
    now = data.get("now")
    if now:
        click.echo(f"now: {now['level'] or 'normal'}, {now['failing']} failing in the window")
    if data.get("incident"):
        _line(data["incident"])


def _line(i: dict[str, Any]) -> None:
    click.echo(
        f"#{i['id']} {i['level'].upper()} {i['state']} since {i['opened_at']} "
        f"commit {short(i['commit'])} roles {','.join(i['roles']) or '-'} "
        f"failing {len(i['failed_devices'])} ({_rate(i['failure_rate'])}): {i['scope']}"
    )


@fleet.command()
@JSON_OPT
def incidents(as_json: bool) -> None:
    """Blast-radius incidents, newest first."""
    data = client().call("GET", "/v1/incidents")["incidents"]
    if as_json:
        App.print_json(data)
        return
    if not data:
        click.echo("no incidents")
    for i in data:
        _line(i)


@fleet.command()
@click.argument("incident_id", type=int)
@JSON_OPT
def incident(incident_id: int, as_json: bool) -> None:
    """One incident: what failed, the pattern, every action taken."""
    i = client().call("GET", f"/v1/incidents/{incident_id}")
    if as_json:
        App.print_json(i)
        return
    _line(i)
    pattern = i.get("pattern") or {}
    if pattern.get("diagnosis"):
        click.echo(f"diagnosis: {pattern['diagnosis']}")
    for key in ("same_role", "same_error", "same_hardware", "same_network", "same_timeframe"):
        if key in pattern:
            click.echo(f"  {key}: {pattern[key]}")
    click.echo(f"failed devices: {' '.join(i['failed_devices']) or '-'}")
    for a in i["actions"]:
        click.echo(f"  {a['at']} {a['action']} by {a.get('by', '?')}: {a['detail']}")


@fleet.command("halt-all")
@click.option("--reason", required=True, help="Why the fleet halts.")
@click.option("--rollback", is_flag=True, help="Also pin every role to its last known good commit.")
def halt_all(reason: str, rollback: bool) -> None:
    """HALT ALL: halt every running rollout, as an emergency (admin)."""
    i = client().call("POST", "/v1/fleet/halt-all", {"reason": reason, "rollback": rollback})
    click.echo(f"fleet halted: incident {i['id']} ({i['level']})")


@fleet.command("resume-all")
@click.option("--reason", required=True, help="Why the fleet resumes.")
def resume_all(reason: str) -> None:
    """RESUME NORMAL: lift the pins an emergency set and close its incident (admin)."""
    data = client().call("POST", "/v1/fleet/resume-all", {"reason": reason})
    closed = ", ".join(str(n) for n in data["resolved"]) or "none"
    click.echo(f"{data['lifted']} emergency pin(s) lifted; incidents resolved: {closed}")
