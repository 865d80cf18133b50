"""``fleetcore plugins``: what is installed, and what each plugin provides."""

from __future__ import annotations

import click

from fleetcore.cli.app import App


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def plugins(app: App, as_json: bool) -> None:
    """List every plugin: version, status (active, disabled, failed), the
    hooks it implements and the names it provides.

    Disable a plugin with FLEETCORE_DISABLE_PLUGINS=name,... or
    [plugins] disable = [...] in agent.toml.
    """
    infos = app.plugins().plugins()
    if as_json:
        app.print_json(
            [
                {
                    "name": i.name,
                    "distribution": i.distribution,
                    "version": i.version,
                    "status": i.status,
                    "error": i.error,
                    "hooks": list(i.hooks),
                    "provides": {k: list(v) for k, v in i.provides.items()},
                }
                for i in infos
            ]
        )
        return
    if not infos:
        click.echo(
            "no plugins installed (install fleetcore with the built-in plugins a "
            "device needs: `pip install 'fleetcore[device]'`)"
        )
        return
    for info in infos:
        dist = (
            f"{info.distribution} {info.version}" if info.distribution else "(registered in code)"
        )
        click.echo(f"{info.name}  [{info.status}]  {dist}")
        if info.error:
            click.echo(f"    error: {info.error}")
        for kind, names in sorted(info.provides.items()):
            click.echo(f"    {kind}: {', '.join(names)}")
        lifecycle = [h for h in info.hooks if not h.startswith("fleetcore_register_")]
        if lifecycle:
            click.echo(f"    hooks: {', '.join(lifecycle)}")
