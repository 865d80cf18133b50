"""The ``fleetcore fleet`` group; its commands live next to it, one module
per area, and add themselves to it."""

from __future__ import annotations

import click

from fleetcore.cli.app import App


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
