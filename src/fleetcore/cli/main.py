"""Entry point of the ``fleetcore`` command.

Exit codes (every command):

==  ==========================================================================
0   success (``agent once``: running the desired release, healthy)
1   failure (an update failed or was rolled back; a command could not finish)
2   bad usage or bad configuration (the message names file and key)
3   deferred (``agent once``: lock held, throttled, outside the maintenance
    window, holding for a rollout, or a newer commit already pending)
4   the device is in safe mode
5   the fleet repo (or server) is unreachable; the current release keeps running
6   ``agent check``: drift was found and repaired
==  ==========================================================================
"""

from __future__ import annotations

import os
import sys

import click

from fleetcore import __version__
from fleetcore.cli.app import App


class LazyGroup(click.Group):
    """Command groups imported only when used, so each command starts fast."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            from importlib import import_module

            module, attr = self.lazy[name].split(":")
            command: click.Command = getattr(import_module(module), attr)
            return command
        return super().get_command(ctx, name)


@click.group(
    cls=LazyGroup,
    lazy={
        "agent": "fleetcore.cli.agent:agent",
        "bundle": "fleetcore.cli.bundle:bundle",
        "config": "fleetcore.cli.config:config",
        "demo": "fleetcore.cli.demo:demo",
        "fleet": "fleetcore.cli.fleet:fleet",
        "plugins": "fleetcore.cli.plugins:plugins",
        "server": "fleetcore.cli.server:server",
        "simulate": "fleetcore.cli.simulate:simulate",
        "secrets": "fleetcore.cli.secrets:secrets",
    },
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="fleetcore")
@click.option(
    "--debug",
    is_flag=True,
    envvar="FLEETCORE_DEBUG",
    help="Show tracebacks and debug logs [env FLEETCORE_DEBUG].",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    envvar="FLEETCORE_LOG_FORMAT",
    help="Log as readable text or JSON lines [env FLEETCORE_LOG_FORMAT; "
    "default: agent.toml log_format, else text].",
)
@click.option(
    "--log-level",
    default="INFO",
    envvar="FLEETCORE_LOG_LEVEL",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Least severe log level shown [env FLEETCORE_LOG_LEVEL].",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str | None, log_level: str) -> None:
    """Pull-based GitOps for fleets of edge devices.

    Devices run `fleetcore agent`: it pulls the device's role from a Git
    repository, verifies, validates and activates it atomically, checks its
    health and rolls back by itself. Exit codes: 0 ok, 1 failed, 2 bad usage
    or configuration, 3 deferred, 4 safe mode, 5 unreachable, 6 drift repaired.
    """
    ctx.obj = App(debug=debug, log_format=log_format, log_level=log_level)


def main() -> None:
    """Run the CLI, turning user errors into one message and an exit code."""
    from fleetcore.errors import FleetcoreError

    debug = "--debug" in sys.argv or bool(os.environ.get("FLEETCORE_DEBUG"))
    try:
        # Without standalone mode click returns the code of ctx.exit() instead of exiting.
        code = cli.main(standalone_mode=False, prog_name="fleetcore")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except FleetcoreError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
