"""``fleetcore completion bash | zsh | fish``: shell completion scripts.

The scripts are click's own: the shell calls ``fleetcore`` back with
``_FLEETCORE_COMPLETE`` set, and click answers from the command tree, so
plugins' commands complete too. Arguments that name server objects (device
ids, roles, rollout ids) ask the control server when FLEETCORE_SERVER and
FLEETCORE_TOKEN are set (``fleet/complete.py``).
"""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")

INSTALL = {
    "bash": "fleetcore completion bash > ~/.local/share/bash-completion/completions/fleetcore",
    "zsh": 'fleetcore completion zsh > "${fpath[1]}/_fleetcore"',
    "fish": "fleetcore completion fish > ~/.config/fish/completions/fleetcore.fish",
}


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
    bash: fleetcore completion bash > ~/.local/share/bash-completion/completions/fleetcore
    zsh:  fleetcore completion zsh > "${fpath[1]}/_fleetcore"
    fish: fleetcore completion fish > ~/.config/fish/completions/fleetcore.fish
    or, for this shell only: eval "$(fleetcore completion bash)"
    """
    from click.shell_completion import get_completion_class

    from fleetcore.cli.main import cli

    cls = get_completion_class(shell)
    assert cls is not None  # every name in SHELLS is one of click's
    click.echo(cls(cli, {}, "fleetcore", "_FLEETCORE_COMPLETE").source())
