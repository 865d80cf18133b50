"""``fleetcore bundle``: offline bundles for air-gapped devices."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import click

from fleetcore.cli.app import App


@click.group()
def bundle() -> None:
    """Make offline bundles (applied with `fleetcore agent apply --bundle`)."""


@bundle.command()
@click.option("--repo", required=True, help="The fleet repo: a folder or a URL.")
@click.option("--commit", "ref", required=True, help="A commit, tag or branch.")
@click.option("--role", required=True, help="The role to bundle.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The bundle file to write.",
)
@click.option("--fetcher", default="git", show_default=True, help="The fetcher plugin to use.")
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="An SSH private key to sign the bundle with (devices with [verify.signature] "
    "apply only bundles an allowed key signed).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_obj
def create(
    app: App,
    repo: str,
    ref: str,
    role: str,
    output: Path,
    fetcher: str,
    sign_key: Path | None,
    as_json: bool,
) -> None:
    """Bundle ROLE at COMMIT of the fleet repo into one verifiable file."""
    import tempfile

    from fleetcore import bundle as bundles
    from fleetcore.cli.progress import progress_factory
    from fleetcore.plugin.types import SourceSettings

    app.setup_logging()
    progress = progress_factory(enabled=not as_json)
    pm = app.plugins()
    record = pm.registry("fetcher").get(fetcher, where="--fetcher", source="command line")
    local = Path(repo)
    if local.is_dir():
        repo = str(local.resolve())
    with tempfile.TemporaryDirectory(prefix="fleetcore-cache-") as cache:
        source = record.factory(
            SourceSettings(repo=repo, cache_dir=Path(cache), progress=progress),
            pm.options(record, None, where="--fetcher", source="command line"),
        )
        commit = _resolve(source, local, ref)
        manifest = bundles.create(
            source, commit, role, output, progress=progress, sign_key=sign_key
        )
    summary = {
        "bundle": str(output),
        "commit": manifest.commit,
        "role": role,
        "files": len(manifest.entries),
        "bytes": manifest.total_size,
        "size": output.stat().st_size,
        "signed": sign_key is not None,
    }
    if as_json:
        app.print_json(summary)
    else:
        click.echo(
            f"wrote {output}: {role}@{commit[:12]}, {summary['files']} files, "
            f"{summary['bytes']} bytes unpacked, {summary['size']} bytes on disk"
        )


def _resolve(source: object, local: Path, ref: str) -> str:
    from fleetcore.errors import FetchError

    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return ref
    if local.is_dir():
        out = subprocess.run(
            ["git", "-C", str(local), "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
        )
        if out.returncode == 0:
            return out.stdout.strip()
        raise FetchError(f"{ref!r} is not a commit, tag or branch of {local}")
    return source.head(ref)  # type: ignore[attr-defined]
