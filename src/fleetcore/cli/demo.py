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
@click.option("--keep", is_flag=True, help="Leave the fleet repo and state behind.")
@click.option(
    "--git-only",
    is_flag=True,
    help="One device without a server: install, update and an automatic rollback.",
)
@click.option("--no-wait", is_flag=True, help="Stop at the end instead of waiting for Ctrl-C.")
def demo(workdir: Path | None, keep: bool, git_only: bool, no_wait: bool) -> None:
    """A control server and six agents on this machine: a canary rollout
    through three segments (or, with --git-only, one device converging the
    example fleet). Stops everything cleanly on Ctrl-C."""
    if git_only:
        from fleetcore.demo import main as git_only_main

        raise click.exceptions.Exit(git_only_main(workdir, keep))
    from fleetcore.demo_fleet import main

    raise click.exceptions.Exit(main(workdir, keep, wait=not no_wait))
