"""``fleetcore lint``: every problem in a fleet repository, one line each."""

from __future__ import annotations

from pathlib import Path

import click

from fleetcore.cli.app import App


@click.command()
@click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path(),
    show_default="the current folder",
    help="The fleet repository checkout to lint.",
)
@click.option("--role", metavar="NAME", help="Only the files of roles/NAME.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--sarif", "as_sarif", is_flag=True, help="Print SARIF 2.1.0 for code hosts.")
@click.option("--fix", is_flag=True, help="Repair what is safe to repair (e.g. chmod +x).")
@click.option(
    "--skip", "skip", multiple=True, metavar="LINTER", help="Leave a linter out (repeatable)."
)
@click.option(
    "--init-ci",
    type=click.Choice(["github", "gitlab"]),
    help="Write a CI workflow that lints every push (and runs the roles' tests), then stop.",
)
@click.option("--force", is_flag=True, help="With --init-ci: replace an existing workflow.")
@click.pass_obj
def lint(
    app: App,
    repo: Path,
    role: str | None,
    as_json: bool,
    as_sarif: bool,
    fix: bool,
    skip: tuple[str, ...],
    init_ci: str | None,
    force: bool,
) -> None:
    """Check a fleet repository before any device sees it.

    Runs every installed linter (`fleetcore plugins` lists them): fleetcore's
    own files, compose files, shell scripts, JSON/YAML/TOML/Python syntax, secrets
    committed in clear text, the files a role needs. Prints one problem per
    line, `path:line: where: message`. Exit 0 when there is no error
    (warnings are shown only), 1 when there are errors, 2 on bad usage.
    """
    repo = repo.resolve()
    if as_json and as_sarif:
        raise click.UsageError("give --json or --sarif, not both")
    if init_ci is not None:
        from fleetcore.lint.ci import write_ci

        try:
            target = write_ci(repo, init_ci, force=force)
        except FileExistsError as exc:
            app.abort(str(exc))
        click.echo(f"wrote {target.relative_to(repo)}")
        return
    from fleetcore.config_check import check_fleet_repo
    from fleetcore.lint.runner import context, run_linters

    pm = app.plugins()
    ctx = context(repo, role=role, config_problems=lambda: check_fleet_repo(repo, pm)[1])
    result = run_linters(pm, ctx, skip=skip, fix=fix)
    for line in result.fixed:
        click.echo(f"fixed {line}", err=True)
    if as_sarif:
        from fleetcore.lint.sarif import sarif

        app.print_json(sarif(result.problems))
    elif as_json:
        app.print_json(
            {
                "ok": result.ok,
                "files": result.files,
                "linters": list(result.linters),
                "fixed": list(result.fixed),
                "problems": [
                    {
                        "path": p.path,
                        "line": p.line,
                        "where": p.where,
                        "message": p.message,
                        "severity": p.severity,
                        "code": p.code,
                        "linter": p.linter,
                    }
                    for p in result.problems
                ],
            }
        )
    else:
        for problem in result.problems:
            click.echo(str(problem))
        errors = sum(p.severity == "error" for p in result.problems)
        click.echo(
            f"{result.files} file(s), {len(result.linters)} linter(s): {errors} error(s), "
            f"{len(result.problems) - errors} warning(s)",
            err=True,
        )
    raise click.exceptions.Exit(0 if result.ok else 1)
