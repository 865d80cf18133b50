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
    """Secrets kept by the server for a role (the `server` secrets provider)."""


@secrets.command("set")
@click.argument("role", shell_complete=complete_roles)
@click.argument("name")
@click.option(
    "--value-file",
    type=click.File("r"),
    default="-",
    show_default="standard input",
    help="Where to read the value: never from the command line, which shell history keeps.",
)
@click.option("--reason", default="", help="Why (for the audit log; never the value).")
def secrets_set(role: str, name: str, value_file: Any, reason: str) -> None:
    """Set or rotate secret NAME of ROLE (devices get it on their next update)."""
    value = value_file.read().rstrip("\n")
    if not value:
        abort("the value is empty", 2)
    client().call("PUT", f"/v1/secrets/{role}/{name}", {"value": value, "reason": reason})
    click.echo(f"{role}/{name} set")


@secrets.command("unset")
@click.argument("role", shell_complete=complete_roles)
@click.argument("name")
@click.option("--reason", default="", help="Why (for the audit log).")
def secrets_unset(role: str, name: str, reason: str) -> None:
    """Remove secret NAME of ROLE."""
    client().call("DELETE", f"/v1/secrets/{role}/{name}", {"reason": reason})
    click.echo(f"{role}/{name} removed")


@secrets.command("list")
@click.argument("role", shell_complete=complete_roles)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def secrets_list(role: str, as_json: bool) -> None:
    """The names of ROLE's secrets, with when and by whom each was set (never values)."""
    data = client().call("GET", f"/v1/secrets/{role}")
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
    return (
        f"{item['id']:>5} {item['kind']:<10} {item['role'] or '-':<8} {item['state']:<7} "
        f"{item['name']}  created {stamp(item['created_at'])} by {item['created_by'] or '?'}"
        f"{expires}{revoked}"
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


@token.command("revoke")
@click.argument("token_id", type=int)
@click.option("--reason", required=True, help="Why (for the audit log).")
def token_revoke(token_id: int, reason: str) -> None:
    """Revoke token TOKEN_ID (an id from `token list`): refused from now on."""
    data = client().call("DELETE", f"/v1/tokens/{token_id}", {"reason": reason})
    click.echo(f"token {data['id']} ({data['name']}) revoked")
