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
from collections.abc import Mapping
from typing import TYPE_CHECKING

import click

from fleetcore import __version__
from fleetcore.cli.app import App

if TYPE_CHECKING:
    from fleetcore.plugin.types import CliCommand


CORE_COMMANDS = {
    "agent": "fleetcore.cli.agent:agent",
    "bundle": "fleetcore.cli.bundle:bundle",
    "completion": "fleetcore.cli.completion:completion",
    "config": "fleetcore.cli.config:config",
    "demo": "fleetcore.cli.demo:demo",
    "fleet": "fleetcore.cli.fleet:fleet",
    "init": "fleetcore.cli.init:init",
    "lint": "fleetcore.cli.lint:lint",
    "plugins": "fleetcore.cli.plugins:plugins",
    "server": "fleetcore.cli.server:server",
    "simulate": "fleetcore.cli.simulate:simulate",
}
"""The core's command groups, imported only when used."""

KNOWN_PLUGIN_COMMANDS = {
    "secrets": ("fleetcore-age", "device"),
}
"""Well-known commands that plugin packages add -> (package, fleetcore extra
that brings it), to name the package when the command is missing."""


class LazyGroup(click.Group):
    """The root group: core groups imported only when used, and the commands
    plugins register (``fleetcore_register_commands``), looked up only when
    the name is not a core one, so ``fleetcore agent once`` loads no plugin
    to find its command."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy, *plugin_commands(ctx, self.lazy)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            from importlib import import_module

            module, attr = self.lazy[name].split(":")
            command: click.Command = getattr(import_module(module), attr)
            return command
        found = super().get_command(ctx, name)
        if found is not None:
            return found
        record = plugin_commands(ctx, self.lazy).get(name)
        if record is None:
            if name in KNOWN_PLUGIN_COMMANDS:
                raise click.UsageError(_missing(ctx, name), ctx)
            return None
        return record.factory()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(n) for n in self.lazy)
        core = []
        for name in sorted(self.lazy):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                core.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(core)
        # Plugins' commands are listed with their record's summary: --help
        # imports none of their modules.
        plugin = plugin_commands(ctx, self.lazy)
        if plugin:
            with formatter.section("Commands added by plugins"):
                formatter.write_dl([(n, r.summary) for n, r in sorted(plugin.items())])


def plugin_commands(ctx: click.Context, core: Mapping[str, str]) -> dict[str, CliCommand]:
    """The commands plugins register, by name; a name that is also a core
    command is an error naming both."""
    app = _app(ctx)
    registry = app.plugins().registry("command")
    commands: dict[str, CliCommand] = {}
    for name in registry.names():
        if name in core:
            from fleetcore.errors import PluginError

            raise PluginError(
                f"plugin {registry.provider(name)} registers the command {name!r}, which is "
                f"the core's `fleetcore {name}`; disable the plugin "
                "(FLEETCORE_DISABLE_PLUGINS) or ask its authors to rename the command"
            )
        commands[name] = registry.get(name, where="", source="")
    return commands


def _missing(ctx: click.Context, name: str) -> str:
    package, extra = KNOWN_PLUGIN_COMMANDS[name]
    text = f"No such command {name!r}: it is added by the plugin package {package}"
    for info in _app(ctx).plugins().plugins():
        if info.distribution == package and info.status != "active":
            why = f": {info.error}" if info.error else ""
            return f"{text}, which is installed but {info.status}{why}; see `fleetcore plugins`"
    return f"{text} (pip install {package}, or fleetcore[{extra}])"


def _app(ctx: click.Context) -> App:
    """The application object; the root's options fill it in later (click
    resolves the subcommand before it runs the root's callback)."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = App()
    assert isinstance(root.obj, App)
    return root.obj


@click.group(
    cls=LazyGroup,
    lazy=CORE_COMMANDS,
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
    app = _app(ctx)
    app.debug, app.log_format, app.log_level = debug, log_format, log_level


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
