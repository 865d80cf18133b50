"""``fleetcore fleet wake | check | safe-mode``: quick actions on one device, as the
dashboard's device page has them (``resume`` lets it leave safe mode)."""

from __future__ import annotations

import click

from fleetcore.cli.fleet.common import client
from fleetcore.cli.fleet.group import fleet


@fleet.command()
@click.argument("device_id")
@click.option("--reason", default="", help="Why (for the audit log).")
def wake(device_id: str, reason: str) -> None:
    """Make DEVICE check for an update now, through its event stream (its
    maintenance window and locks still hold)."""
    client().call("POST", f"/v1/devices/{device_id}/wake", {"reason": reason})
    click.echo(f"{device_id} was told to check for updates now")


@fleet.command()
@click.argument("device_id")
@click.option("--reason", default="", help="Why (for the audit log).")
def check(device_id: str, reason: str) -> None:
    """Ask DEVICE for a deep drift check now; its findings show in `fleet device`."""
    client().call("POST", f"/v1/devices/{device_id}/check", {"reason": reason})
    click.echo(f"{device_id} was asked for a deep drift check")


@fleet.command("safe-mode")
@click.argument("device_id")
@click.option("--reason", required=True, help="Why (for the audit log).")
def safe_mode(device_id: str, reason: str) -> None:
    """Put DEVICE in safe mode: it keeps what it runs and takes no update until
    `fleetcore fleet resume DEVICE`."""
    client().call("POST", f"/v1/devices/{device_id}/safe-mode", {"reason": reason})
    click.echo(f"{device_id} enters safe mode at its next poll or event")
