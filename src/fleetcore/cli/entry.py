"""The ``fleetcore`` command's entry point.

``fleetcore agent once`` on a device whose agent runs as a service hands its
cycle off to the service (:mod:`fleetcore.agent.handoff`): this is checked
first, with the standard library alone, so the hand-off does not pay for
importing click and the CLI. Every other command line (and ``agent once``
with options this does not know, or with no service to hand off to) goes to
the CLI, :func:`fleetcore.cli.main.main`.
"""

from __future__ import annotations

import os
import sys

DEFAULT_CONFIG = "/etc/fleetcore/agent.toml"


def main() -> None:
    code = handed_off(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    from fleetcore.cli.main import main as cli_main

    cli_main()


def handed_off(args: list[str]) -> int | None:
    """Hand ``agent once [--config FILE] [--json]`` off to the running
    service and print its result; the exit code, or None when the CLI is to
    run the command (other options, no service listening)."""
    if args[:2] != ["agent", "once"]:
        return None
    config = os.environ.get("FLEETCORE_CONFIG") or DEFAULT_CONFIG
    as_json = False
    rest = args[2:]
    while rest:
        arg = rest.pop(0)
        if arg == "--json":
            as_json = True
        elif arg == "--config" and rest:
            config = rest.pop(0)
        elif arg.startswith("--config="):
            config = arg.removeprefix("--config=")
        else:
            return None  # --help, --no-handoff, a mistake: the CLI's to answer
    if not config:
        return None
    from fleetcore.agent.handoff import ask, render

    reply = ask(config)
    if reply is None:
        return None
    text, to_stderr = render(reply, as_json)
    print(text, file=sys.stderr if to_stderr else sys.stdout, flush=True)
    return int(reply["exit_code"])
