"""``fleetcore fleet device``: one device, shown or admitted.

``fleetcore fleet device ID [--json]`` shows a device, as it always has;
``device accept ID`` and ``device allow-reenroll ID --reason R`` are what
an admin does about its enrollment. The group reads a first word that is
not one of its commands as a device id to show (``device show ID`` says
the same, and shows a device whose id is a command's name).
"""

from __future__ import annotations

from typing import Any

import click
from click.shell_completion import CompletionItem

from fleetcore.cli.app import App
from fleetcore.cli.fleet.common import JSON_OPT, client, short
from fleetcore.cli.fleet.complete import complete_devices
from fleetcore.cli.fleet.group import fleet


class DeviceGroup(click.Group):
    """A group whose first argument, when it is no command of the group,
    is the device to show."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        return super().parse_args(ctx, args)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        # `device ID` is the usual form: device ids first; the commands only
        # once a word has begun (`device a` -> accept, allow-reenroll).
        devices = complete_devices(ctx, click.Argument(["device_id"]), incomplete)
        if not incomplete:
            return devices
        return [*super().shell_complete(ctx, incomplete), *devices]


@fleet.group(cls=DeviceGroup)
def device() -> None:
    """One device: `device ID` shows it; `accept` and `allow-reenroll` admit it."""


@device.command("show")
@click.argument("device_id", shell_complete=complete_devices)
@JSON_OPT
def show(device_id: str, as_json: bool) -> None:
    """One device: status, desired state, policy, history."""
    from fleetcore.cli.devices_table import labels_text

    d = client().call("GET", f"/v1/devices/{device_id}")
    if as_json:
        App.print_json(d)
        return
    for key in ("device_id", "role", "segment", "status", "commit", "last_seen", "current_error"):
        click.echo(f"{key}: {d[key]}")
    if d.get("pending"):
        click.echo(f"pending: waiting for `fleetcore fleet device accept {device_id}`")
    click.echo(f"labels: {labels_text(d.get('labels'))}")
    desired = d["desired"]
    click.echo(f"desired: {short(desired['commit'])} ({desired['why']}: {desired['reason']})")
    for h in d["history"][:10]:
        click.echo(
            f"  {h['timestamp']} {short(h['from_commit'])} -> {short(h['to_commit'])} "
            f"{h['result']} {h['reason']}"
        )


@device.command("accept")
@click.argument("device_id", shell_complete=complete_devices)
@click.option("--reason", default="", help="Why (for the audit log).")
@JSON_OPT
def accept(device_id: str, reason: str, as_json: bool) -> None:
    """Accept DEVICE_ID, enrolled with a token that requires approval: it
    gets its desired state and secrets from its next request on."""
    data: dict[str, Any] = client().call(
        "POST", f"/v1/devices/{device_id}/accept", {"reason": reason}
    )
    if as_json:
        App.print_json(data)
    else:
        click.echo(f"{device_id} accepted")


@device.command("allow-reenroll")
@click.argument("device_id", shell_complete=complete_devices)
@click.option("--reason", required=True, help="Why (for the audit log).")
@click.option(
    "--ttl",
    default="1h",
    show_default=True,
    help="How long the approval holds (at most 7d); it is used up by one enrollment.",
)
@JSON_OPT
def allow_reenroll(device_id: str, reason: str, ttl: str, as_json: bool) -> None:
    """Let DEVICE_ID enroll again with an enrollment token, once: for a device
    that lost its credential (reinstalled, or revoked). Its current
    credential stops working when it enrolls."""
    from fleetcore.config.units import Duration

    try:
        seconds = Duration.parse(ttl).seconds
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    data: dict[str, Any] = client().call(
        "POST",
        f"/v1/devices/{device_id}/allow-reenroll",
        {"reason": reason, "ttl_seconds": seconds},
    )
    if as_json:
        App.print_json(data)
    else:
        click.echo(f"{device_id} may enroll again once, until {data['expires_at']}")
