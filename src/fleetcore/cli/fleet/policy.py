"""``fleetcore fleet pin | unpin | lock | unlock | override |
maintenance-window``: what devices may run."""

from __future__ import annotations

import json
from typing import Any

import click

from fleetcore.cli.fleet.common import client, short, when, window
from fleetcore.cli.fleet.complete import complete_devices
from fleetcore.cli.fleet.group import fleet


@fleet.command()
@click.argument("commit")
@click.option("--reason", required=True, help="Why the fleet is pinned.")
@click.option("--expires", help="When the pin lapses: a date or a duration (2h).")
def pin(commit: str, reason: str, expires: str | None) -> None:
    """Pin the whole fleet to COMMIT (emergency)."""
    data = client().call(
        "PUT", "/v1/fleet/pin", {"commit": commit, "reason": reason, "expires": when(expires)}
    )
    click.echo(f"fleet pinned to {short(data['commit'])}")


@fleet.command()
@click.option("--reason", default="", help="Why (for the audit log).")
def unpin(reason: str) -> None:
    """Lift the fleet pin."""
    client().call("DELETE", "/v1/fleet/pin", {"reason": reason})
    click.echo("fleet unpinned")


@fleet.command()
@click.argument("device_id", shell_complete=complete_devices)
@click.argument("commit")
@click.option("--reason", required=True, help="Why the device is locked.")
@click.option("--until", help="When the lock lapses: a date or a duration (2h).")
def lock(device_id: str, commit: str, reason: str, until: str | None) -> None:
    """Hold DEVICE on COMMIT."""
    body = {"commit": commit, "reason": reason, "until": when(until)}
    client().call("PUT", f"/v1/devices/{device_id}/lock", body)
    click.echo(f"{device_id} locked to {short(commit)}")


@fleet.command()
@click.argument("device_id", shell_complete=complete_devices)
@click.option("--reason", default="", help="Why (for the audit log).")
def unlock(device_id: str, reason: str) -> None:
    """Lift DEVICE's version lock."""
    client().call("DELETE", f"/v1/devices/{device_id}/lock", {"reason": reason})
    click.echo(f"{device_id} unlocked")


@fleet.command()
@click.argument("device_id", shell_complete=complete_devices)
@click.option("--branch", help="Follow this branch's head instead of rollouts.")
@click.option("--auto-update/--no-auto-update", default=None, help="Maintenance mode off/on.")
@click.option(
    "--maintenance-window",
    "window_spec",
    metavar="'DAYS START-END [TZ]'",
    help="The device's own maintenance window.",
)
@click.option("--clear", is_flag=True, help="Back to the defaults (rollouts, auto-update on).")
@click.option("--reason", default="", help="Why (for the audit log).")
def override(
    device_id: str,
    branch: str | None,
    auto_update: bool | None,
    window_spec: str | None,
    clear: bool,
    reason: str,
) -> None:
    """Per-device override: a branch, updates off, a maintenance window."""
    body: dict[str, Any] = {"clear": clear, "reason": reason}
    if window_spec is not None:
        body["maintenance_window"] = window(window_spec)
    if branch is not None:
        body["branch"] = branch
    if auto_update is not None:
        body["auto_update"] = auto_update
    d = client().call("PUT", f"/v1/devices/{device_id}/override", body)
    desired = d["desired"]
    click.echo(f"{device_id}: {desired['why']} {short(desired['commit'])}")


@fleet.command("maintenance-window")
@click.argument("spec", required=False, metavar="['DAYS START-END [TZ]']")
@click.option("--clear", is_flag=True, help="Remove the fleet's window.")
@click.option("--reason", default="", help="Why (for the audit log).")
def maintenance_window(spec: str | None, clear: bool, reason: str) -> None:
    """Set the fleet's maintenance window, e.g. 'saturday,sunday 02:00-05:00 UTC'."""
    if (spec is None) == (not clear):
        raise click.UsageError("give a window or --clear")
    parsed = None if clear or spec is None else window(spec)
    body = {"maintenance_window": parsed, "reason": reason}
    data = client().call("PUT", "/v1/fleet/maintenance-window", body)
    click.echo(f"maintenance window: {json.dumps(data['maintenance_window'])}")
