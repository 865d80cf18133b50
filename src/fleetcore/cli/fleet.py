"""``fleetcore fleet``: operators drive the control server.

Talks to the server's operator API with :mod:`fleetcore.http`, on the
standard library (no extra dependency on operators' machines); redirects are
not followed, so the token goes only to ``--server``. Exit codes: 0 done, 1 refused
or failed, 2 bad usage or input, 5 server unreachable.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any, NoReturn

import click

from fleetcore.cli.app import App


class Client:
    def __init__(self, server: str, token: str) -> None:
        from fleetcore.http import Client as HttpClient

        self.server = server.rstrip("/")
        self.token = token
        # The scheme was checked in fleet(): only http(s) URLs get here.
        self._http = HttpClient(
            self.server, timeout=60, headers={"Authorization": f"Bearer {token}"}
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        from fleetcore.http import RedirectError, StatusError, TransportError

        try:
            with self._http.request(method, path, json=body) as response:
                raw = response.read()
        except RedirectError as exc:
            _abort(
                f"the server at {self.server} redirected {method} {path} to {exc.location}; "
                "give --server the address that answers",
                2,
            )
        except StatusError as exc:
            self._fail(exc.status or 0, exc.body)
        except TransportError as exc:
            _abort(f"cannot reach the server at {self.server}: {exc.reason}", 5)
        return json.loads(raw) if raw else None

    @staticmethod
    def _fail(status: int, raw: bytes) -> NoReturn:
        try:
            payload = json.loads(raw)
            message = payload.get("error") or raw.decode(errors="replace")
            field = payload.get("field")
        except (ValueError, AttributeError):
            message, field = raw.decode(errors="replace")[:300], None
        where = f" @ {field}" if field else ""
        code = 2 if status in (400, 404, 413) else 1
        _abort(f"{message}{where} (HTTP {status})", code)


def _abort(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _when(value: str | None) -> str | None:
    """An ISO date and time, or a duration from now ('2h', '3d')."""
    if value is None:
        return None
    from fleetcore.config.units import Duration

    try:
        seconds = Duration.parse(value).seconds
        return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"expected a date like 2026-01-31T12:00Z or a duration like 2h, got {value!r}"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).isoformat()


def _window(spec: str) -> dict[str, Any]:
    """'saturday,sunday 02:00-05:00 Europe/Berlin' -> a maintenance window."""
    parts = spec.split()
    if len(parts) not in (2, 3) or "-" not in parts[1]:
        raise click.BadParameter(
            f"expected 'DAYS START-END [TIMEZONE]' like 'saturday,sunday 02:00-05:00 UTC', "
            f"got {spec!r}"
        )
    start, _, end = parts[1].partition("-")
    window = {"days": parts[0].split(","), "start": start, "end": end}
    if len(parts) == 3:
        window["timezone"] = parts[2]
    return window


JSON_OPT = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


# Not required by click itself: a required group option would be demanded
# before a subcommand's --help could be shown. The commands ask for them.
@click.group()
@click.option(
    "--server",
    envvar="FLEETCORE_SERVER",
    help="The control server's URL [env FLEETCORE_SERVER; required].",
)
@click.option(
    "--token",
    envvar="FLEETCORE_TOKEN",
    help="An operator token [env FLEETCORE_TOKEN; required].",
)
@click.pass_context
def fleet(ctx: click.Context, server: str | None, token: str | None) -> None:
    """Operate the fleet through the control server: status, rollouts, policy."""
    app: App = ctx.obj
    ctx.obj = (app, server, token)


def _client() -> Client:
    """The server client, once a command needs it (exit 2 without one)."""
    _app, server, token = click.get_current_context().obj
    if not server:
        raise click.UsageError("Missing option '--server' (or FLEETCORE_SERVER).")
    if not server.startswith(("http://", "https://")):
        raise click.BadParameter(f"expected an http(s) URL, got {server!r}", param_hint="--server")
    if not token:
        raise click.UsageError("Missing option '--token' (or FLEETCORE_TOKEN).")
    return Client(server, token)


def _short(commit: str | None) -> str:
    return (commit or "none")[:12]


@fleet.command()
@JSON_OPT
def status(as_json: bool) -> None:
    """Devices by status and commit, the pin, active rollouts."""
    data = _client().call("GET", "/v1/fleet/status")
    if as_json:
        App.print_json(data)
        return
    click.echo(f"devices: {data['total']} ({data['online']} online)")
    for name, count in sorted(data["by_status"].items()):
        click.echo(f"  {name}: {count}")
    for c in data["commits"]:
        click.echo(f"commit {_short(c['commit'])}: {c['devices']} ({c['share']:.0%})")
    if data["pin"]:
        pin = data["pin"]
        by = f" by {pin['by']}" if pin.get("by") else ""
        until = f" until {pin['expires']}" if pin.get("expires") else ""
        click.echo(f"PINNED to {_short(pin['commit'])}{by}{until}: {pin['reason']}")
    for r in data["rollouts"]:
        _rollout_line(r)


def _rollout_line(r: dict[str, Any]) -> None:
    p = r["progress"][-1] if r.get("progress") else None
    counts = (
        f" targeted {p['targeted']} updated {p['updated']} healthy {p['healthy']} "
        f"failed {p['failed']}"
        if p
        else ""
    )
    click.echo(
        f"rollout {r['id']}: {_short(r['commit'])} role {r['role'] or '*'} {r['strategy']} "
        f"step {r['step'] + 1}/{r['steps']} {r['state']}{counts}"
        + (f" ({r['reason']})" if r["reason"] else "")
    )


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

    data = _client().call("GET", f"/v1/devices{label_query(labels)}")["devices"]
    if as_json:
        App.print_json(data)
        return
    for line in device_rows(data):
        click.echo(line)


@fleet.command()
@click.argument("device_id")
@JSON_OPT
def device(device_id: str, as_json: bool) -> None:
    """One device: status, desired state, policy, history."""
    from fleetcore.cli.devices_table import labels_text

    d = _client().call("GET", f"/v1/devices/{device_id}")
    if as_json:
        App.print_json(d)
        return
    for key in ("device_id", "role", "segment", "status", "commit", "last_seen", "current_error"):
        click.echo(f"{key}: {d[key]}")
    click.echo(f"labels: {labels_text(d.get('labels'))}")
    desired = d["desired"]
    click.echo(f"desired: {_short(desired['commit'])} ({desired['why']}: {desired['reason']})")
    for h in d["history"][:10]:
        click.echo(
            f"  {h['timestamp']} {_short(h['from_commit'])} -> {_short(h['to_commit'])} "
            f"{h['result']} {h['reason']}"
        )


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
@click.option("--role", help="Only this role [default: every role].")
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
    data = _client().call("POST", "/v1/rollouts", body)
    if as_json:
        App.print_json(data)
    else:
        _rollout_line(data)


def _action(action: str) -> click.Command:
    @click.argument("rollout_id", type=int)
    @click.option("--reason", default="", help="Why (for the audit log).")
    @JSON_OPT
    def command(rollout_id: int, reason: str, as_json: bool) -> None:
        data = _client().call("POST", f"/v1/rollouts/{rollout_id}/{action}", {"reason": reason})
        if as_json:
            App.print_json(data)
        else:
            _rollout_line(data)

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
    data = _client().call("GET", "/v1/rollouts")["rollouts"]
    if as_json:
        App.print_json(data)
        return
    for r in data:
        _rollout_line(r)


@rollout.command("show")
@click.argument("rollout_id", type=int)
@JSON_OPT
def rollout_show(rollout_id: int, as_json: bool) -> None:
    """One rollout: progress per step and every decision."""
    r = _client().call("GET", f"/v1/rollouts/{rollout_id}")
    if as_json:
        App.print_json(r)
        return
    _rollout_line(r)
    for p in r["progress"]:
        click.echo(
            f"  step {p['step'] + 1} {json.dumps(p['options'])}: targeted {p['targeted']} "
            f"updated {p['updated']} healthy {p['healthy']} failed {p['failed']}"
        )
    for d in r["decisions"]:
        click.echo(f"  {d['at']} {d['action']} step {d['step'] + 1}: {d['detail']}")


@fleet.command()
@click.argument("commit")
@click.option("--reason", required=True, help="Why the fleet is pinned.")
@click.option("--expires", help="When the pin lapses: a date or a duration (2h).")
def pin(commit: str, reason: str, expires: str | None) -> None:
    """Pin the whole fleet to COMMIT (emergency)."""
    data = _client().call(
        "PUT", "/v1/fleet/pin", {"commit": commit, "reason": reason, "expires": _when(expires)}
    )
    click.echo(f"fleet pinned to {_short(data['commit'])}")


@fleet.command()
@click.option("--reason", default="", help="Why (for the audit log).")
def unpin(reason: str) -> None:
    """Lift the fleet pin."""
    _client().call("DELETE", "/v1/fleet/pin", {"reason": reason})
    click.echo("fleet unpinned")


@fleet.command()
@click.argument("device_id")
@click.argument("commit")
@click.option("--reason", required=True, help="Why the device is locked.")
@click.option("--until", help="When the lock lapses: a date or a duration (2h).")
def lock(device_id: str, commit: str, reason: str, until: str | None) -> None:
    """Hold DEVICE on COMMIT."""
    body = {"commit": commit, "reason": reason, "until": _when(until)}
    _client().call("PUT", f"/v1/devices/{device_id}/lock", body)
    click.echo(f"{device_id} locked to {_short(commit)}")


@fleet.command()
@click.argument("device_id")
@click.option("--reason", default="", help="Why (for the audit log).")
def unlock(device_id: str, reason: str) -> None:
    """Lift DEVICE's version lock."""
    _client().call("DELETE", f"/v1/devices/{device_id}/lock", {"reason": reason})
    click.echo(f"{device_id} unlocked")


@fleet.command()
@click.argument("device_id")
@click.option("--branch", help="Follow this branch's head instead of rollouts.")
@click.option("--auto-update/--no-auto-update", default=None, help="Maintenance mode off/on.")
@click.option(
    "--maintenance-window",
    "window",
    metavar="'DAYS START-END [TZ]'",
    help="The device's own maintenance window.",
)
@click.option("--clear", is_flag=True, help="Back to the defaults (rollouts, auto-update on).")
@click.option("--reason", default="", help="Why (for the audit log).")
def override(
    device_id: str,
    branch: str | None,
    auto_update: bool | None,
    window: str | None,
    clear: bool,
    reason: str,
) -> None:
    """Per-device override: a branch, updates off, a maintenance window."""
    body: dict[str, Any] = {"clear": clear, "reason": reason}
    if window is not None:
        body["maintenance_window"] = _window(window)
    if branch is not None:
        body["branch"] = branch
    if auto_update is not None:
        body["auto_update"] = auto_update
    d = _client().call("PUT", f"/v1/devices/{device_id}/override", body)
    desired = d["desired"]
    click.echo(f"{device_id}: {desired['why']} {_short(desired['commit'])}")


@fleet.command("maintenance-window")
@click.argument("spec", required=False, metavar="['DAYS START-END [TZ]']")
@click.option("--clear", is_flag=True, help="Remove the fleet's window.")
@click.option("--reason", default="", help="Why (for the audit log).")
def maintenance_window(spec: str | None, clear: bool, reason: str) -> None:
    """Set the fleet's maintenance window, e.g. 'saturday,sunday 02:00-05:00 UTC'."""
    if (spec is None) == (not clear):
        raise click.UsageError("give a window or --clear")
    window = None if clear or spec is None else _window(spec)
    body = {"maintenance_window": window, "reason": reason}
    data = _client().call("PUT", "/v1/fleet/maintenance-window", body)
    click.echo(f"maintenance window: {json.dumps(data['maintenance_window'])}")


@fleet.command()
@click.option("--limit", type=int, default=50, show_default=True)
@JSON_OPT
def audit(limit: int, as_json: bool) -> None:
    """Who changed what, when and why."""
    rows = _client().call("GET", f"/v1/audit?limit={limit}")["audit"]
    if as_json:
        App.print_json(rows)
        return
    for r in rows:
        click.echo(f"{r['at']} {r['actor']} {r['action']} {r['target']} {r['reason']}".rstrip())


@fleet.group()
def secrets() -> None:
    """Secrets kept by the server for a role (the `server` secrets provider)."""


@secrets.command("set")
@click.argument("role")
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
        _abort("the value is empty", 2)
    _client().call("PUT", f"/v1/secrets/{role}/{name}", {"value": value, "reason": reason})
    click.echo(f"{role}/{name} set")


@secrets.command("unset")
@click.argument("role")
@click.argument("name")
@click.option("--reason", default="", help="Why (for the audit log).")
def secrets_unset(role: str, name: str, reason: str) -> None:
    """Remove secret NAME of ROLE."""
    _client().call("DELETE", f"/v1/secrets/{role}/{name}", {"reason": reason})
    click.echo(f"{role}/{name} removed")


@secrets.command("list")
@click.argument("role")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def secrets_list(role: str, as_json: bool) -> None:
    """The names of ROLE's secrets, with when and by whom each was set (never values)."""
    data = _client().call("GET", f"/v1/secrets/{role}")
    if as_json:
        click.echo(json.dumps(data["secrets"], indent=2))
        return
    for item in data["secrets"]:
        stamp = dt.datetime.fromtimestamp(item["updated_at"], dt.UTC).isoformat(timespec="seconds")
        click.echo(f"{item['name']}  set {stamp} by {item['updated_by']}")


@fleet.command()
@click.argument("device_id")
@click.option("--reason", default="", help="Why (for the audit log).")
def resume(device_id: str, reason: str) -> None:
    """Let DEVICE leave safe mode: it attempts updates again on its next cycle."""
    _client().call("POST", f"/v1/devices/{device_id}/resume", {"reason": reason})
    click.echo(f"{device_id} may leave safe mode")


@fleet.command()
@click.argument("device_id")
@click.option("--reason", required=True, help="Why (for the audit log).")
def revoke(device_id: str, reason: str) -> None:
    """Revoke DEVICE's credential: it can no longer read its desired state or
    report until it is enrolled again."""
    _client().call("POST", f"/v1/devices/{device_id}/revoke", {"reason": reason})
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
    data = _client().call("GET", "/v1/tokens")["tokens"]
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
    body = {"role": role, "name": name, "expires": _when(expires)}
    data = _client().call("POST", "/v1/tokens", body)
    if as_json:
        App.print_json(data)
    else:
        click.echo(data["token"])


@token.command("revoke")
@click.argument("token_id", type=int)
@click.option("--reason", required=True, help="Why (for the audit log).")
def token_revoke(token_id: int, reason: str) -> None:
    """Revoke token TOKEN_ID (an id from `token list`): refused from now on."""
    data = _client().call("DELETE", f"/v1/tokens/{token_id}", {"reason": reason})
    click.echo(f"token {data['id']} ({data['name']}) revoked")
