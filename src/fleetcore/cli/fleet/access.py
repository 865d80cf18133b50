"""``fleetcore fleet audit | secrets | resume | revoke | token``: who did what, and who may."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from fleetcore.cli.app import App
from fleetcore.cli.fleet.common import JSON_OPT, abort, client, when
from fleetcore.cli.fleet.complete import complete_devices, complete_roles
from fleetcore.cli.fleet.group import fleet


@fleet.command()
@click.option("--limit", type=int, default=50, show_default=True)
@JSON_OPT
def audit(limit: int, as_json: bool) -> None:
    """Who changed what, when and why."""
    rows = client().call("GET", f"/v1/audit?limit={limit}")["audit"]
    if as_json:
        App.print_json(rows)
        return
    for r in rows:
        click.echo(f"{r['at']} {r['actor']} {r['action']} {r['target']} {r['reason']}".rstrip())


@fleet.group()
def secrets() -> None:
    """Secrets kept by the server for a role or a device (the `server` secrets provider)."""


DEVICE_OPT = click.option(
    "--device",
    is_flag=True,
    help="ROLE is a device id instead: that device's own secret, which wins over its role's.",
)


def _secret_path(owner: str, device: bool) -> str:
    return f"/v1/device-secrets/{owner}" if device else f"/v1/secrets/{owner}"


@secrets.command("set")
@click.argument("owner", metavar="ROLE", shell_complete=complete_roles)
@click.argument("name")
@DEVICE_OPT
@click.option(
    "--value-file",
    type=click.File("r"),
    default="-",
    show_default="standard input",
    help="Where to read the value: never from the command line, which shell history keeps.",
)
@click.option("--reason", default="", help="Why (for the audit log; never the value).")
def secrets_set(owner: str, name: str, device: bool, value_file: Any, reason: str) -> None:
    """Set or rotate secret NAME of ROLE (or, with --device, of one device)
    (devices get it on their next update)."""
    value = value_file.read().rstrip("\n")
    if not value:
        abort("the value is empty", 2)
    path = f"{_secret_path(owner, device)}/{name}"
    client().call("PUT", path, {"value": value, "reason": reason})
    click.echo(f"{owner}/{name} set")


@secrets.command("unset")
@click.argument("owner", metavar="ROLE", shell_complete=complete_roles)
@click.argument("name")
@DEVICE_OPT
@click.option("--reason", default="", help="Why (for the audit log).")
def secrets_unset(owner: str, name: str, device: bool, reason: str) -> None:
    """Remove secret NAME of ROLE (or, with --device, of one device)."""
    client().call("DELETE", f"{_secret_path(owner, device)}/{name}", {"reason": reason})
    click.echo(f"{owner}/{name} removed")


@secrets.command("list")
@click.argument("owner", metavar="ROLE", shell_complete=complete_roles)
@DEVICE_OPT
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def secrets_list(owner: str, device: bool, as_json: bool) -> None:
    """The names of ROLE's (or, with --device, one device's own) secrets,
    with when and by whom each was set (never values)."""
    data = client().call("GET", _secret_path(owner, device))
    if as_json:
        click.echo(json.dumps(data["secrets"], indent=2))
        return
    for item in data["secrets"]:
        stamp = dt.datetime.fromtimestamp(item["updated_at"], dt.UTC).isoformat(timespec="seconds")
        click.echo(f"{item['name']}  set {stamp} by {item['updated_by']}")


@fleet.command()
@click.argument("device_id", shell_complete=complete_devices)
@click.option("--reason", default="", help="Why (for the audit log).")
def resume(device_id: str, reason: str) -> None:
    """Let DEVICE leave safe mode: it attempts updates again on its next cycle."""
    client().call("POST", f"/v1/devices/{device_id}/resume", {"reason": reason})
    click.echo(f"{device_id} may leave safe mode")


@fleet.command()
@click.argument("device_id", shell_complete=complete_devices)
@click.option("--reason", required=True, help="Why (for the audit log).")
def revoke(device_id: str, reason: str) -> None:
    """Revoke DEVICE's credential: it can no longer read its desired state or
    report until it is enrolled again."""
    client().call("POST", f"/v1/devices/{device_id}/revoke", {"reason": reason})
    click.echo(f"{device_id}: credential revoked")


@fleet.group()
def token() -> None:
    """Operator and enrollment tokens (admin)."""


def token_line(item: dict[str, Any]) -> str:
    """One token as `fleetcore fleet token list` and `fleetcore server token
    list` print it: never the token itself, which the server does not keep."""

    def stamp(value: str) -> str:
        return dt.datetime.fromisoformat(value).isoformat(timespec="seconds")

    expires = f" expires {stamp(item['expires_at'])}" if item["expires_at"] else ""
    revoked = (
        f" revoked {stamp(item['revoked_at'])} by {item['revoked_by']}"
        if item["revoked_at"]
        else ""
    )
    scope = ""
    if item["kind"] == "enrollment":
        # Older servers do not send the scope: .get() keeps the line readable.
        uses = item.get("uses", 0)
        limit = item.get("max_uses")
        scope = f" segment {item.get('segment') or 'any'}, used {uses}/{limit or 'unlimited'}"
        if item.get("require_approval"):
            scope += ", needs approval"
    return (
        f"{item['id']:>5} {item['kind']:<10} {item['role'] or '-':<8} {item['state']:<7} "
        f"{item['name']}  created {stamp(item['created_at'])} by {item['created_by'] or '?'}"
        f"{expires}{revoked}{scope}"
    )


@token.command("list")
@JSON_OPT
def token_list(as_json: bool) -> None:
    """Every token with its id, role, state and who created it."""
    data = client().call("GET", "/v1/tokens")["tokens"]
    if as_json:
        App.print_json(data)
        return
    for item in data:
        click.echo(token_line(item))


@token.command("create")
@click.option(
    "--role",
    type=click.Choice(["viewer", "operator", "admin"]),
    required=True,
    help="viewer reads; operator runs rollouts; admin pins, locks, overrides, revokes.",
)
@click.option("--name", default="", help="Who or what the token is for (shown in lists).")
@click.option("--expires", help="When the token stops working: a date or a duration (90d).")
@JSON_OPT
def token_create(role: str, name: str, expires: str | None, as_json: bool) -> None:
    """Issue an operator token and print it: it is shown this once."""
    body = {"role": role, "name": name, "expires": when(expires)}
    data = client().call("POST", "/v1/tokens", body)
    if as_json:
        App.print_json(data)
    else:
        click.echo(data["token"])


@token.command("enrollment")
@click.option("--role", "device_role", help="Only devices of this role may enroll with it.")
@click.option(
    "--segment",
    type=click.Choice(["canary", "early", "general"]),
    help="Only devices in this rollout segment may enroll with it.",
)
@click.option("--max-uses", type=click.IntRange(min=1), help="At most this many enrollments.")
@click.option(
    "--ttl",
    default="7d",
    show_default=True,
    help="How long devices may enroll with it (a duration: 2h, 7d).",
)
@click.option(
    "--require-approval",
    is_flag=True,
    help="Devices stay pending (no desired state, no secrets) until "
    "`fleetcore fleet device accept ID`.",
)
@click.option("--name", default="", help="Who or what the token is for (shown in lists).")
@JSON_OPT
def token_enrollment(
    device_role: str | None,
    segment: str | None,
    max_uses: int | None,
    ttl: str,
    require_approval: bool,
    name: str,
    as_json: bool,
) -> None:
    """Issue an enrollment token and print it: it is shown this once. It
    admits new device ids only, within its scope."""
    from fleetcore.config.units import Duration

    try:
        seconds = Duration.parse(ttl).seconds
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    body = {
        "role": device_role,
        "segment": segment,
        "max_uses": max_uses,
        "ttl_seconds": seconds,
        "require_approval": require_approval,
        "name": name,
    }
    data = client().call("POST", "/v1/enrollment-tokens", body)
    if as_json:
        App.print_json(data)
    else:
        click.echo(data["token"])


@token.command("revoke")
@click.argument("token_id", type=int)
@click.option("--reason", required=True, help="Why (for the audit log).")
def token_revoke(token_id: int, reason: str) -> None:
    """Revoke token TOKEN_ID (an id from `token list`): refused from now on."""
    data = client().call("DELETE", f"/v1/tokens/{token_id}", {"reason": reason})
    click.echo(f"token {data['id']} ({data['name']}) revoked")
