"""The built-in linters on small fleet repositories, through the real runner."""

from __future__ import annotations

from pathlib import Path

from fleetcore.lint.interface import LintContext, Linter, Problem, hookimpl
from fleetcore.lint.runner import context, run_linters
from fleetcore.plugin.manager import PluginManager


def lint(repo: Path, *, config: list[str] | None = None) -> list[str]:
    pm = PluginManager()
    ctx = context(repo, role=None, config_problems=lambda: list(config or []))
    return [str(p) for p in run_linters(pm, ctx).problems]


def write(repo: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    return repo


def test_syntax_errors_carry_their_line(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {
            "a.json": '{\n  "a": 1,\n  "b": \n}\n',
            "b.toml": 'x = 1\ny = "open\n',
            "c.yaml": "a: 1\n b: 2\n",
            "fine.yml": "a: [1, 2]\n---\nb: 3\n",
            "roles/web/probe.py": "import sys\n\ndef main(:\n    pass\n",
        },
    )
    problems = lint(repo)
    assert [p.split(": ")[0] for p in problems] == [
        "a.json:4",
        "b.toml:2",
        "c.yaml:2",
        "roles/web/probe.py:3",
    ]
    assert problems[1].startswith("b.toml:2: invalid TOML: ") and "(at line" not in problems[1]


def test_secrets_in_env_files_and_compose_environment(tmp_path: Path) -> None:
    generated = "q8Zr2LkW9vXc4NbT7yHs1JdF6gPm3Ea0"
    repo = write(
        tmp_path,
        {
            "roles/web/app.env": f"MODE=production\nDB_PASSWORD=hunter2hunter2\nSEED={generated}\n"
            "API_TOKEN=${FROM_PROVIDER}\n",
            "roles/web/docker-compose.yml": "services:\n  app:\n    image: app:1\n"
            f"    environment:\n      LEVEL: debug\n      SESSION: {generated}\n",
            "roles/web/token.txt": "ghp_" + "a1B2c3D4" * 5 + "\n",
            "roles/web/secret.env.age": "-----BEGIN AGE ENCRYPTED FILE-----\n",
            "keys/pi-01.pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI pi-01\n",
            "roles/web/notes.md": f"example: {generated}  # fleetcore: not-a-secret\n",
        },
    )
    problems = lint(repo)
    assert problems == [
        "roles/web/app.env:2: DB_PASSWORD: DB_PASSWORD has a value in clear text",
        "roles/web/app.env:3: SEED: SEED has a high-entropy value (a generated secret?)",
        "roles/web/docker-compose.yml:6: services.app.environment.SESSION: SESSION has a "
        "high-entropy value (a generated secret?)",
        "roles/web/token.txt:1: github-token: a github token in clear text: encrypt it "
        "(`fleetcore secrets encrypt`) or use a secrets provider",
    ]
    assert not any(generated in p or "hunter2" in p for p in problems)


def test_fleetcore_config_problems_point_at_their_key(tmp_path: Path) -> None:
    repo = write(
        tmp_path,
        {"fleet.toml": '# fleet\n[rollout]\nstrategy = "percentage"\npercent = 0\n'},
    )
    line = f"{repo / 'fleet.toml'}: percent must be between 1 and 100, got 0 @ rollout.percent"
    assert lint(repo, config=[line]) == [
        "fleet.toml:4: rollout.percent: percent must be between 1 and 100, got 0"
    ]
    table = f"{repo / 'fleet.toml'}: unknown key @ rollout.strateg"
    assert lint(repo, config=[table]) == ["fleet.toml:2: rollout.strateg: unknown key"]


def test_a_linter_that_raises_is_a_problem_and_the_others_run(tmp_path: Path) -> None:
    write(tmp_path, {"bad.json": "{"})

    class Plugin:
        @hookimpl
        def fleetcore_register_linters(self):
            def broken(ctx: LintContext) -> list[Problem]:
                raise RuntimeError("boom")

            def readme(ctx: LintContext):
                if "README.md" not in ctx.files:
                    yield Problem(path=".", message="no README.md", severity="warning")

            yield Linter(name="broken", summary="raises", run=broken)
            yield Linter(name="readme", summary="a README", run=readme)

    pm = PluginManager()
    pm.register(Plugin(), name="in-test")
    ctx = context(tmp_path, role=None, config_problems=list)
    result = run_linters(pm, ctx, skip=["shell"])
    found = {(p.linter, str(p)) for p in result.problems}
    assert ("broken", ".:1: broken: linter broken raised RuntimeError('boom')") in found
    assert ("readme", ".:1: warning: no README.md") in found
    assert (
        "syntax",
        "bad.json:1: invalid JSON: Expecting property name enclosed in double quotes",
    ) in found
    assert "shell" not in result.linters and not result.ok


def test_compose_itself_checks_what_the_schema_cannot(tmp_path: Path) -> None:
    """With the installed Compose (v2 or v1): references between services;
    ${VARS} from secrets providers are not required at lint time."""
    from fleetcore_lint.compose import compose_argv

    assert compose_argv() is not None, "a Compose binary is needed: scripts/system-deps.sh --tests"
    repo = write(
        tmp_path,
        {
            "roles/a/docker-compose.yml": "services:\n  app:\n"
            '    image: "app:${TAG:?set by the secrets provider}"\n'
            "    depends_on: [db]\n",
            "roles/b/docker-compose.yml": "services:\n  app:\n"
            '    image: "app:1"\n    environment:\n      DB_PASSWORD: "${DB_PASSWORD:?}"\n',
        },
    )
    problems = lint(repo)
    assert len(problems) == 1, problems
    assert problems[0].startswith("roles/a/docker-compose.yml:1: compose config: ")
    assert "db" in problems[0].split("compose config: ")[1]
