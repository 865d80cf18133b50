"""What every ``fleetcore fleet`` command shares: the operator API client,
its errors and exit codes, and parsing of times and windows.

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
            abort(
                f"the server at {self.server} redirected {method} {path} to {exc.location}; "
                "give --server the address that answers",
                2,
            )
        except StatusError as exc:
            self._fail(exc.status or 0, exc.body)
        except TransportError as exc:
            abort(f"cannot reach the server at {self.server}: {exc.reason}", 5)
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
        abort(f"{message}{where} (HTTP {status})", code)


def abort(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def when(value: str | None) -> str | None:
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


def window(spec: str) -> dict[str, Any]:
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


def client() -> Client:
    """The server client, once a command needs it (exit 2 without one)."""
    _app, server, token = click.get_current_context().obj
    if not server:
        raise click.UsageError("Missing option '--server' (or FLEETCORE_SERVER).")
    if not server.startswith(("http://", "https://")):
        raise click.BadParameter(f"expected an http(s) URL, got {server!r}", param_hint="--server")
    if not token:
        raise click.UsageError("Missing option '--token' (or FLEETCORE_TOKEN).")
    return Client(server, token)


def short(commit: str | None) -> str:
    return (commit or "none")[:12]


def rollout_line(r: dict[str, Any]) -> None:
    p = r["progress"][-1] if r.get("progress") else None
    counts = (
        f" targeted {p['targeted']} updated {p['updated']} healthy {p['healthy']} "
        f"failed {p['failed']}"
        if p
        else ""
    )
    click.echo(
        f"rollout {r['id']}: {short(r['commit'])} role {r['role'] or '*'} {r['strategy']} "
        f"step {r['step'] + 1}/{r['steps']} {r['state']}{counts}"
        + (f" ({r['reason']})" if r["reason"] else "")
    )
