"""``fleetcore init fleet | agent``: start a fleet repo or a device config.

Both refuse to overwrite anything (exit 1, naming what is in the way), and
write files atomically. ``init fleet`` makes the folder a git repository
with one commit when git can (a repo is what agents and the server fetch).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import click

from fleetcore.cli import templates
from fleetcore.cli.app import App

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _name(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not NAME_RE.match(value):
        raise click.BadParameter(
            f"letters, digits, '.', '_' or '-', starting with a letter or digit; got {value!r}"
        )
    return value


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _write_new(files: dict[Path, str], executable: tuple[str, ...] = ()) -> None:
    from fleetcore.files import atomic_write

    in_the_way = sorted(str(p) for p in files if p.exists() or p.is_symlink())
    if in_the_way:
        App.abort(f"refusing to overwrite: {', '.join(in_the_way)}")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = 0o755 if path.suffix in executable else 0o644
        atomic_write(path, text.encode(), mode)
        path.chmod(mode)


@click.group()
def init() -> None:
    """Start a fleet repo or a device's agent.toml (never overwrites)."""


@init.command("fleet")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--role", default="web", show_default=True, callback=_name, help="The first role's name."
)
@click.option("--no-git", is_flag=True, help="Only write the files: no `git init`, no commit.")
def init_fleet(directory: Path, role: str, no_git: bool) -> None:
    """A fleet repo in DIRECTORY: fleet.toml and one role whose validate.sh,
    activate.sh and health.sh pass as they are; a git repository with a
    first commit on branch main (unless --no-git or DIRECTORY is in one)."""
    files = {
        directory / path.format(role=role): text.format(role=role)
        for path, text in templates.FLEET_FILES.items()
    }
    _write_new(files, executable=(".sh",))
    click.echo(f"fleet repo written in {directory} (role {role})")
    if no_git:
        return
    committed = _git_commit(directory)
    if committed:
        click.echo(f"committed as {committed[:12]} on branch main")
    click.echo(
        "next: fleetcore config check --repo "
        f"{directory}; fleetcore init agent --device-id ID --role {role} --repo "
        f"{directory.resolve()}"
    )


def _git_commit(directory: Path) -> str | None:
    """``git init`` and a first commit; None (with why) when git is missing,
    the folder is already inside a repo, or no author identity is set."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
        )

    try:
        inside = git("rev-parse", "--is-inside-work-tree")
    except FileNotFoundError:
        click.echo("git is not installed: commit the files yourself", err=True)
        return None
    if inside.returncode == 0:
        click.echo("already inside a git repository: add and commit the files yourself")
        return None
    if git("init", "-q", "-b", "main").returncode != 0:
        click.echo("git init failed: make it a repository yourself", err=True)
        return None
    git("add", "-A")
    done = git("commit", "-q", "-m", "fleet: a first role, from fleetcore init")
    if done.returncode != 0:
        click.echo(
            f"git commit failed ({done.stderr.strip()}): commit the files yourself", err=True
        )
        return None
    return git("rev-parse", "HEAD").stdout.strip()


@init.command("agent")
@click.option("--device-id", required=True, callback=_name, help="This device's unique id.")
@click.option("--role", required=True, callback=_name, help="The role (roles/ROLE in the repo).")
@click.option("--repo", required=True, help="The fleet repo: a path or any URL git fetches.")
@click.option("--server", "server_url", help="A control server's URL: the device is managed.")
@click.option("--branch", default="main", show_default=True, help="The branch devices follow.")
@click.option(
    "--segment",
    type=click.Choice(["canary", "early", "general"]),
    default="general",
    show_default=True,
    help="When rollouts reach this device.",
)
@click.option(
    "--state-dir",
    default="/var/lib/fleetcore",
    show_default=True,
    help="Releases and state (relative paths: from the config's folder).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default="/etc/fleetcore/agent.toml",
    show_default=True,
    envvar="FLEETCORE_CONFIG",
    help="Where to write it [env FLEETCORE_CONFIG].",
)
@click.pass_obj
def init_agent(
    app: App,
    device_id: str,
    role: str,
    repo: str,
    server_url: str | None,
    branch: str,
    segment: str,
    state_dir: str,
    config_path: Path,
) -> None:
    """An agent.toml that `fleetcore config check` accepts: git-only, or
    managed with --server (then run `fleetcore agent enroll`)."""
    from fleetcore.config.agent import parse_agent_config
    from fleetcore.config.convert import parse_toml

    if server_url is not None and not server_url.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"expected an http(s) URL, got {server_url!r}", param_hint="--server"
        )
    text = templates.AGENT_TOML.format(
        device_id=device_id,
        device_id_q=_quote(device_id),
        role_q=_quote(role),
        segment_q=_quote(segment),
        state_dir_q=_quote(state_dir),
        repo_q=_quote(repo),
        branch_q=_quote(branch),
    )
    if server_url is not None:
        text += templates.SERVER_TABLE.format(url_q=_quote(server_url.rstrip("/")))
    else:
        text += templates.NO_SERVER
    # Parsed before it is written: what init writes must load.
    parse_agent_config(parse_toml(text.encode(), str(config_path)), str(config_path))
    _write_new({config_path: text})
    mode = "managed" if server_url else "git-only"
    click.echo(f"{config_path} written ({mode})")
    if server_url:
        click.echo(f"next: fleetcore agent enroll --config {config_path} --enrollment-token TOKEN")
    else:
        click.echo(f"next: fleetcore agent run --config {config_path}")
