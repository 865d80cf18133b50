"""``fleetcore fleet rollout watch ID``: follow a rollout until it ends.

On a terminal the view is redrawn in place: the rollout's state, each step
with its device counts, and the newest decisions. Anywhere else (a pipe, a
CI log) it prints one line each time something changed, so a log shows the
rollout's story and not a screen of repeated frames.

Exit codes: 0 the rollout completed; 1 it halted, was aborted or was
superseded by a newer rollout; 2 no such rollout; 3 ``--timeout`` passed
while it was still running; 5 the server did not answer.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from fleetcore.cli.app import App
from fleetcore.cli.fleet.common import JSON_OPT, client, short
from fleetcore.cli.fleet.complete import complete_rollouts
from fleetcore.cli.fleet.rollouts import rollout

OUTCOME = {"completed": 0, "halted": 1, "aborted": 1, "superseded": 1}
"""A rollout's state when watching ends -> exit code (running: not ended)."""
TIMED_OUT = 3


def view(r: dict[str, Any]) -> list[str]:
    """The lines of one frame: a header, one line per step reached, and the
    last few decisions."""
    reason = f" ({r['reason']})" if r.get("reason") else ""
    lines = [
        f"rollout {r['id']}: {short(r['commit'])} role {r['role'] or '*'} {r['strategy']} "
        f"step {r['step'] + 1}/{r['steps']} {r['state']}{reason}"
    ]
    for p in r.get("progress") or []:
        lines.append(
            f"  step {p['step'] + 1} {json.dumps(p['options'])}: targeted {p['targeted']} "
            f"updated {p['updated']} healthy {p['healthy']} failed {p['failed']}"
        )
    for d in (r.get("decisions") or [])[-3:]:
        lines.append(f"  {d['at']} {d['action']} step {d['step'] + 1}: {d['detail']}")
    return lines


@rollout.command("watch")
@click.argument("rollout_id", type=int, shell_complete=complete_rollouts)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=2.0,
    show_default=True,
    help="Seconds between looks at the rollout.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    help="Give up after this many seconds (exit 3) [default: wait until it ends].",
)
@JSON_OPT
def rollout_watch(rollout_id: int, interval: float, timeout: float | None, as_json: bool) -> None:
    """Follow rollout ROLLOUT_ID live until it completes, halts or is aborted.

    Exit 0 completed; 1 halted, aborted or superseded; 2 no such rollout;
    3 --timeout passed; 5 server unreachable. With --json, the rollout as it
    ended is printed once at the end.
    """
    api = client()
    live = not as_json and sys.stdout.isatty()
    deadline = None if timeout is None else time.monotonic() + timeout
    shown: list[str] = []
    while True:
        r = api.call("GET", f"/v1/rollouts/{rollout_id}")
        lines = view(r)
        if live:
            # Up over the last frame and clear it, then draw the new one.
            erase = f"\x1b[{len(shown)}F\x1b[J" if shown else ""
            click.echo(erase + "\n".join(lines))
        elif not as_json:
            for line in lines:
                if line not in shown:
                    click.echo(line)
        shown = lines
        code = OUTCOME.get(r["state"])
        if code is None and deadline is not None and time.monotonic() >= deadline:
            code = TIMED_OUT
        if code is not None:
            break
        time.sleep(interval)
    if as_json:
        App.print_json({**r, "exit_code": code})
    elif code == TIMED_OUT:
        click.echo(f"rollout {rollout_id} still {r['state']} after {timeout:g}s", err=True)
    raise click.exceptions.Exit(code)
