"""`fleetcore lint` as a fleet repository's developer and CI use it: the real
CLI, the installed built-in linters, ShellCheck, Compose and pre-commit."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples/fleet"
SARIF_SCHEMA = Path(__file__).parent / "data/sarif-schema-2.1.0.json"


def fleetcore(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetcore", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


def example_copy(tmp_path: Path) -> Path:
    repo = tmp_path / "fleet"
    shutil.copytree(EXAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "fleet")
    return repo


def break_it(repo: Path) -> None:
    """The five mistakes the issue names, each in its own file."""
    (repo / "roles/camera/docker-compose.yml").write_text(
        "services:\n"
        "  stream:\n"
        "    image: local/busybox:1\n"
        "    network_mode: host\n"
        "    ports: 8081\n"
    )
    (repo / "roles/web/health.sh").write_text('#!/bin/sh\nif [ -f /tmp/x ]; then\n  echo "up"\n')
    validate = repo / "roles/web/validate.sh"
    validate.chmod(validate.stat().st_mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    (repo / "roles/web/config/settings.yaml").write_text("port: 8080\nhosts: [a, b\nmode: x\n")
    key = repo / "roles/web/config/id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (repo / "keys").mkdir(exist_ok=True)
    shutil.move(f"{key}.pub", repo / "keys/deploy.pub")


def test_the_example_fleet_passes_its_own_lint() -> None:
    assert shutil.which("shellcheck"), "ShellCheck is needed: scripts/system-deps.sh --tests"
    result = fleetcore("lint", "--repo", str(EXAMPLE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "0 error(s)" in result.stderr


def test_a_fleet_started_by_init_passes_its_lint(tmp_path: Path) -> None:
    started = fleetcore("init", "fleet", str(tmp_path / "fleet"))
    assert started.returncode == 0, started.stderr
    result = fleetcore("lint", "--repo", str(tmp_path / "fleet"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_a_broken_copy_fails_with_one_line_per_problem(tmp_path: Path) -> None:
    repo = example_copy(tmp_path)
    break_it(repo)
    result = fleetcore("lint", cwd=repo)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    expected = [
        "roles/camera/docker-compose.yml:5: services.stream.ports: 8081 is not of type 'array'",
        "roles/web/config/id_ed25519:1: private-key: a private key in clear text",
        "roles/web/config/settings.yaml:3: invalid YAML: ",
        "roles/web/health.sh:2: SC1046: Couldn't find 'fi' for this 'if'.",
        "roles/web/validate.sh:1: mode: not executable",
    ]
    for start in expected:
        assert [line for line in lines if line.startswith(start)], (start, lines)
    # The public key is fine, and no line shows the private key's text.
    assert not [line for line in lines if "keys/deploy.pub" in line]
    key_text = (repo / "roles/web/config/id_ed25519").read_text()
    assert not any(part in result.stdout for part in key_text.splitlines()[1:-1])


def test_json_fix_and_role(tmp_path: Path) -> None:
    repo = example_copy(tmp_path)
    break_it(repo)
    as_json = json.loads(fleetcore("lint", "--repo", str(repo), "--json").stdout)
    assert as_json["ok"] is False
    assert {"compose", "fleetcore-config", "role-files", "secrets", "shell", "syntax"} <= set(
        as_json["linters"]
    )
    found = {(p["linter"], p["path"], p["line"]) for p in as_json["problems"]}
    assert ("role-files", "roles/web/validate.sh", 1) in found
    assert ("shell", "roles/web/health.sh", 2) in found

    camera = fleetcore("lint", "--repo", str(repo), "--role", "camera")
    assert camera.returncode == 1
    assert camera.stdout.splitlines() and all(
        line.startswith("roles/camera/") for line in camera.stdout.splitlines()
    )

    fixed = fleetcore("lint", "--repo", str(repo), "--role", "web", "--fix")
    assert "fixed roles/web/validate.sh:1: made validate.sh executable" in fixed.stderr
    assert os.access(repo / "roles/web/validate.sh", os.X_OK)
    assert "validate.sh" not in fixed.stdout
    assert "health.sh:2" in fixed.stdout  # not safely fixable: still reported

    unknown = fleetcore("lint", "--repo", str(repo), "--role", "nope")
    assert unknown.returncode == 2
    assert "no role 'nope'" in unknown.stderr and "camera, web" in unknown.stderr
    both = fleetcore("lint", "--repo", str(repo), "--json", "--sarif")
    assert both.returncode == 2
    skip = fleetcore("lint", "--repo", str(repo), "--skip", "shel")
    assert skip.returncode == 2 and "unknown linter 'shel'" in skip.stderr


def test_lint_with_no_linter_installed_fails_loudly(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FLEETCORE_DISABLE_PLUGINS": "lint-config,lint-syntax,lint-compose,lint-shell,"
        "lint-secrets,lint-roles",
    }
    result = subprocess.run(
        [sys.executable, "-m", "fleetcore", "lint", "--repo", str(EXAMPLE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no linter is installed: pip install fleetcore-lint" in result.stderr


def test_sarif_validates_against_the_sarif_schema(tmp_path: Path) -> None:
    repo = example_copy(tmp_path)
    break_it(repo)
    result = fleetcore("lint", "--repo", str(repo), "--sarif")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    schema = json.loads(SARIF_SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(document)
    results = document["runs"][0]["results"]
    located = {
        (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["level"],
        )
        for r in results
    }
    assert ("roles/web/validate.sh", 1, "error") in located
    assert ("roles/web/config/settings.yaml", 3, "error") in located
    rule_ids = {rule["id"] for rule in document["runs"][0]["tool"]["driver"]["rules"]}
    assert {r["ruleId"] for r in results} <= rule_ids
    # A broken document fails the same validation: the test can fail.
    del document["runs"][0]["tool"]["driver"]["name"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(document)


def test_the_pre_commit_hook_runs_on_a_fleet_repository(tmp_path: Path) -> None:
    """pre-commit installs the hook from the project's own folder (no network)."""
    repo = example_copy(tmp_path)
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(Path(sys.executable).parent / "pre-commit"),
                "try-repo",
                str(ROOT),
                "fleetcore-lint",
                "--all-files",
            ],
            cwd=repo,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    clean = run()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "fleetcore lint" in clean.stdout and "Passed" in clean.stdout
    break_it(repo)
    broken = run()
    assert broken.returncode == 1
    assert "Failed" in broken.stdout
    assert "roles/web/validate.sh:1: mode: not executable" in broken.stdout


def test_init_ci_writes_workflows_that_lint_every_push(tmp_path: Path) -> None:
    repo = example_copy(tmp_path)
    (repo / "roles/web/tests").mkdir()
    (repo / "roles/web/tests/test_web.py").write_text("def test_ok():\n    pass\n")

    github = fleetcore("lint", "--repo", str(repo), "--init-ci", "github")
    assert github.returncode == 0, github.stderr
    workflow = repo / ".github/workflows/fleetcore.yml"
    data = yaml.safe_load(workflow.read_text())
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads `on` as true
    assert "push" in triggers
    runs = [s.get("run", "") for job in data["jobs"].values() for s in job["steps"]]
    assert "fleetcore lint" in runs
    assert "python -m pytest -q roles/web/tests" in runs
    checked = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            str(workflow),
        ],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

    again = fleetcore("lint", "--repo", str(repo), "--init-ci", "github")
    assert again.returncode == 1 and "--force" in again.stderr

    gitlab = fleetcore("lint", "--repo", str(repo), "--init-ci", "gitlab")
    assert gitlab.returncode == 0, gitlab.stderr
    pipeline = yaml.safe_load((repo / ".gitlab-ci.yml").read_text())
    assert "fleetcore lint" in pipeline["fleetcore-lint"]["script"]
    assert "python -m pytest -q roles/web/tests" in pipeline["web-tests"]["script"]
    checked = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(repo / ".gitlab-ci.yml"),
        ],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The workflow it wrote is itself clean under the linters.
    assert fleetcore("lint", "--repo", str(repo)).returncode == 0
