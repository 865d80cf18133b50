"""``fleetcore secrets``: device keys and age-encrypted secrets in the fleet repo.

Added to the ``fleetcore`` command line by this package's
``fleetcore_register_commands`` (:mod:`fleetcore_age.plugin`); ``pyrage`` is
imported only when a command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from fleetcore.plugin import CommandApp

DEFAULT_IDENTITY = "/etc/fleetcore/identity.age"
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
repo_option = click.option(
    "--repo",
    "repo",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=".",
    show_default=True,
    envvar="FLEETCORE_REPO",
    help="The fleet repo's working tree [env FLEETCORE_REPO].",
)


def _age() -> tuple[ModuleType, ModuleType, ModuleType]:
    """fleetcore_age's keys and repo modules, with pyrage checked."""
    import fleetcore_age
    from fleetcore_age import keys, repo

    keys.pyrage()  # a clear error now rather than halfway through
    return fleetcore_age, keys, repo


@click.group()
def secrets() -> None:
    """Device keys and secrets encrypted with age in the fleet repo.

    Recipients live in the repo: keys/<role>/<device_id>.pub for each device
    of a role, keys/operators/*.pub for operators who can read everything.
    """


@secrets.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_IDENTITY,
    show_default=True,
    help="Where to write the new identity (mode 0600); an existing file is never replaced.",
)
@json_option
@click.pass_obj
def keygen(app: CommandApp, out: Path, as_json: bool) -> None:
    """Make this device's age identity and print its recipient (public key).

    File the printed recipient in the fleet repo as keys/<role>/<device_id>.pub.
    """
    _, keys, _ = _age()
    if out.exists() or out.is_symlink():
        app.abort(f"{out} already exists; not replacing an identity (remove it first)")
    text, recipient = keys.generate()
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        keys.write_private(out, text.encode())
    except FileExistsError:
        app.abort(f"{out} already exists; not replacing an identity (remove it first)")
    except OSError as exc:
        app.abort(f"cannot write {out}: {exc.strerror}")
    if as_json:
        app.print_json({"identity": str(out), "recipient": recipient})
    else:
        click.echo(f"wrote {out}", err=True)
        click.echo(recipient)


@secrets.command()
@repo_option
@click.option("--role", required=True, help="The role whose devices may read the file.")
@click.option(
    "--as",
    "name",
    help="Path of the file inside the role (default: FILE's path relative to the "
    "current folder, or its name). Required when FILE is '-' (standard input).",
)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@json_option
@click.pass_obj
def encrypt(
    app: CommandApp, repo: Path, role: str, name: str | None, file: Path, as_json: bool
) -> None:
    """Encrypt FILE to every device of the role and the operators.

    Writes roles/ROLE/<name>.age in the repo; the plaintext is never written
    into the repo (FILE must live outside it).
    """
    _, _, repo_mod = _age()
    repo = repo.resolve()
    if str(file) == "-":
        if not name:
            app.abort("--as NAME is needed when the plaintext comes from standard input", 2)
        data = sys.stdin.buffer.read()
    else:
        absolute = file.resolve()
        if absolute.is_relative_to(repo):
            app.abort(
                f"{file} is inside the fleet repo; keep plaintext secrets outside it "
                "(a later `git add` would publish them)",
                2,
            )
        try:
            data = file.read_bytes()
        except OSError as exc:
            app.abort(f"cannot read {file}: {exc.strerror}")
        if not name:
            name = (
                file.as_posix() if not file.is_absolute() and ".." not in file.parts else file.name
            )
    assert name is not None
    target, readers = repo_mod.encrypt_to(repo, role, data, name)
    rel = target.relative_to(repo).as_posix()
    if as_json:
        app.print_json({"file": rel, "recipients": [r.as_json() for r in readers]})
    else:
        click.echo(f"{rel}: {_who(readers)}")


@secrets.command()
@repo_option
@click.option("--role", "roles", multiple=True, help="Only this role (repeatable); default: all.")
@click.option(
    "--identity",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="An operator identity (age or OpenSSH ed25519) that can decrypt the files.",
)
@json_option
@click.pass_obj
def rekey(
    app: CommandApp, repo: Path, roles: tuple[str, ...], identity: Path, as_json: bool
) -> None:
    """Re-encrypt every .age file of the role(s) to the current recipients.

    Run it after adding or removing a key under keys/: a removed device
    cannot read the new versions (it keeps what it already had).
    """
    _, _, repo_mod = _age()
    repo = repo.resolve()
    chosen = list(roles) or repo_mod.roles_with_secrets(repo)
    done = repo_mod.rekey(repo, chosen, identity)
    if as_json:
        app.print_json(
            {
                "files": [
                    {"file": rel, "recipients": [r.as_json() for r in readers]}
                    for rel, readers in done
                ]
            }
        )
        return
    for rel, readers in done:
        click.echo(f"{rel}: {_who(readers)}")
    click.echo(f"rekeyed {len(done)} file(s)", err=True)


def _who(readers: list[Any]) -> str:
    devices = [r.name for r in readers if r.kind == "device"]
    operators = [r.name for r in readers if r.kind == "operator"]
    text = f"devices {', '.join(devices)}"
    return text + (f"; operators {', '.join(operators)}" if operators else "")
