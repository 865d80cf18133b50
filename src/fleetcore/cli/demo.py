"""``fleetcore demo``: see fleetcore work in a minute, without a fleet."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--dir",
    "workdir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Work here instead of a temporary folder.",
)
@click.option("--keep", is_flag=True, help="Leave the fleet repo, state and web server behind.")
def demo(workdir: Path | None, keep: bool) -> None:
    """Converge the example fleet with a local agent: a first install, an
    update, and a broken release rolled back by itself."""
    from fleetcore.demo import main

    raise click.exceptions.Exit(main(workdir, keep))
