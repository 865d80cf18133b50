"""``fleetcore fleet status | devices``: what the fleet runs."""

from __future__ import annotations

import click

from fleetcore.cli.app import App
from fleetcore.cli.fleet.branches import branch_lines
from fleetcore.cli.fleet.common import JSON_OPT, client, rollout_line, short
from fleetcore.cli.fleet.group import fleet


@fleet.command()
@JSON_OPT
def status(as_json: bool) -> None:
    """Devices by status and commit, the pin, active rollouts."""
    data = client().call("GET", "/v1/fleet/status")
    if as_json:
        App.print_json(data)
        return
    click.echo(f"devices: {data['total']} ({data['online']} online)")
    for name, count in sorted(data["by_status"].items()):
        click.echo(f"  {name}: {count}")
    for c in data["commits"]:
        click.echo(f"commit {short(c['commit'])}: {c['devices']} ({c['share']:.0%})")
    if data["pin"]:
        pin = data["pin"]
        by = f" by {pin['by']}" if pin.get("by") else ""
        until = f" until {pin['expires']}" if pin.get("expires") else ""
        click.echo(f"PINNED to {short(pin['commit'])}{by}{until}: {pin['reason']}")
    incident = (data.get("blast_radius") or {}).get("incident")
    if incident:
        click.echo(
            f"INCIDENT {incident['id']} {incident['level'].upper()} "
            f"(commit {short(incident['commit'])}): {incident['scope']}"
        )
    for r in data["rollouts"]:
        rollout_line(r)
    for step in data.get("first_steps", []):
        click.echo(f"first step: {step['message']}; run: {step['command']}")
    branch_lines(data.get("branches") or {})


@fleet.command()
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only devices with this label (repeatable: all must match).",
)
@JSON_OPT
def devices(labels: tuple[str, ...], as_json: bool) -> None:
    """Every device with its status, commit and labels."""
    from fleetcore.cli.devices_table import device_rows, label_query

    data = client().call("GET", f"/v1/devices{label_query(labels)}")["devices"]
    if as_json:
        App.print_json(data)
        return
    for line in device_rows(data):
        click.echo(line)
