"""``fleetcore config check``: validate an agent config and a fleet repo."""

from __future__ import annotations

from pathlib import Path

import click

from fleetcore.cli.app import App


@click.group()
def config() -> None:
    """Check configuration files before they reach devices."""


@config.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An agent.toml to check.",
)
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A fleet repo checkout to check (fleet.toml, devices/, roles/).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def check(app: App, config_path: Path | None, repo: Path | None, as_json: bool) -> None:
    """Report every problem in an agent config and a fleet repo, one per line.

    Checks syntax, types and keys, and that every plugin named (fetcher,
    activators, checks, rollout strategies) is installed and accepts its
    options. Exit 0 when all is well, 2 when anything is wrong.
    """
    from fleetcore.config_check import check_agent_config, check_fleet_repo

    if config_path is None and repo is None:
        raise click.UsageError("give --config, --repo or both")
    pm = app.plugins()
    problems: list[str] = []
    checked: list[str] = []
    if config_path is not None:
        checked.append(str(config_path))
        problems += check_agent_config(config_path, pm)
    if repo is not None:
        files, found = check_fleet_repo(repo, pm)
        checked += files
        problems += found
    if as_json:
        app.print_json({"ok": not problems, "checked": checked, "problems": problems})
    else:
        for line in problems:
            click.echo(line)
        click.echo(f"{len(checked)} file(s) checked, {len(problems)} problem(s)")
    raise click.exceptions.Exit(2 if problems else 0)
