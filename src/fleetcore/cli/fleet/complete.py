"""Completion of device ids, roles and rollout ids from the control server.

Used as ``shell_complete=`` of the fleet commands' arguments. The server and
token come from the command line being completed or FLEETCORE_SERVER and
FLEETCORE_TOKEN; without them, or when the server does not answer within a
couple of seconds, nothing is offered and nothing is printed: a completion
must never spill errors into the user's prompt.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click
from click.shell_completion import CompletionItem

TIMEOUT = 2.0


def _get(ctx: click.Context, path: str) -> Any:
    server = token = None
    for c in (ctx, *_parents(ctx)):
        server = server or c.params.get("server")
        token = token or c.params.get("token")
    server = server or os.environ.get("FLEETCORE_SERVER")
    token = token or os.environ.get("FLEETCORE_TOKEN")
    if not server or not token or not server.startswith(("http://", "https://")):
        return None
    from fleetcore.http import Client, RequestError

    http = Client(server.rstrip("/"), timeout=TIMEOUT, headers={"Authorization": f"Bearer {token}"})
    try:
        with http.request("GET", path) as response:
            return json.loads(response.read())
    except (RequestError, OSError, ValueError):
        return None


def _parents(ctx: click.Context) -> list[click.Context]:
    found = []
    while ctx.parent is not None:
        ctx = ctx.parent
        found.append(ctx)
    return found


def _matching(values: list[tuple[str, str]], incomplete: str) -> list[CompletionItem]:
    return [CompletionItem(v, help=h or None) for v, h in values if v.startswith(incomplete)]


def complete_devices(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    data = _get(ctx, "/v1/devices")
    devices = data.get("devices", []) if isinstance(data, dict) else []
    return _matching(
        [(d["device_id"], f"{d.get('role', '')} {d.get('status', '')}".strip()) for d in devices],
        incomplete,
    )


def complete_roles(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    data = _get(ctx, "/v1/fleet/status")
    by_role = data.get("by_role", {}) if isinstance(data, dict) else {}
    stable = data.get("stable", {}) if isinstance(data, dict) else {}
    names = sorted({*by_role, *(r for r in stable if r != "*")})
    return _matching([(r, f"{by_role.get(r, 0)} device(s)") for r in names], incomplete)


def complete_rollouts(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    data = _get(ctx, "/v1/rollouts")
    items = data.get("rollouts", []) if isinstance(data, dict) else []
    return _matching(
        [
            (str(r["id"]), f"{r.get('state', '')} {(r.get('commit') or '')[:12]}".strip())
            for r in items
        ],
        incomplete,
    )
