"""CI workflows for a fleet repository: lint on every push, then the roles' own tests.

A role has tests when it holds ``tests/`` (run with pytest) or an executable
``test.sh``; the workflow gets one step per such role, so a role added
later needs ``fleetcore lint --init-ci`` run again (or a line by hand).
"""

from __future__ import annotations

import json
from pathlib import Path

from fleetcore.files import atomic_write

TARGETS = {"github": ".github/workflows/fleetcore.yml", "gitlab": ".gitlab-ci.yml"}

_INSTALL = [
    "sudo apt-get update -qq && sudo apt-get install -y -qq shellcheck",
    'python -m pip install "fleetcore[lint]"',
]


def role_tests(repo: Path) -> list[tuple[str, str]]:
    """(role, command) for every role that has tests of its own."""
    found = []
    for role in sorted(p for p in (repo / "roles").glob("*") if p.is_dir()):
        if (role / "tests").is_dir():
            found.append((role.name, f"python -m pytest -q roles/{role.name}/tests"))
        elif (role / "test.sh").is_file():
            found.append((role.name, f"cd roles/{role.name} && ./test.sh"))
    return found


def _q(value: str) -> str:
    # JSON strings are YAML strings: no quoting rule of YAML's to get wrong.
    return json.dumps(value)


def github(repo: Path) -> str:
    lines = [
        "# Written by `fleetcore lint --init-ci github`: every push is checked",
        "# before any device sees it.",
        "name: fleetcore",
        "on:",
        "  push:",
        "  pull_request:",
        "jobs:",
        "  lint:",
        "    runs-on: ubuntu-latest",
        "    permissions:",
        "      contents: read",
        "      security-events: write",
        "    steps:",
        "      - uses: actions/checkout@v4",
        "      - uses: actions/setup-python@v5",
        "        with:",
        '          python-version: "3.12"',
        *[f"      - run: {_q(c)}" for c in _INSTALL],
        "      - name: fleetcore lint",
        f"        run: {_q('fleetcore lint')}",
        "      - name: findings for the code view",
        "        if: always()",
        f"        run: {_q('fleetcore lint --sarif > fleetcore-lint.sarif || true')}",
        "      - uses: github/codeql-action/upload-sarif@v3",
        "        if: always()",
        "        with:",
        "          sarif_file: fleetcore-lint.sarif",
    ]
    tests = role_tests(repo)
    if tests:
        lines += [
            "  role-tests:",
            "    runs-on: ubuntu-latest",
            "    needs: lint",
            "    steps:",
            "      - uses: actions/checkout@v4",
            "      - uses: actions/setup-python@v5",
            "        with:",
            '          python-version: "3.12"',
            f"      - run: {_q('python -m pip install pytest')}",
        ]
        for role, command in tests:
            lines += [f"      - name: {_q(f'tests of role {role}')}", f"        run: {_q(command)}"]
    return "\n".join(lines) + "\n"


def gitlab(repo: Path) -> str:
    lines = [
        "# Written by `fleetcore lint --init-ci gitlab`: every push is checked",
        "# before any device sees it.",
        "stages:",
        "  - lint",
        "  - test",
        "fleetcore-lint:",
        "  stage: lint",
        "  image: python:3.12",
        "  script:",
        f"    - {_q('apt-get update -qq && apt-get install -y -qq shellcheck')}",
        f"    - {_q(_INSTALL[1])}",
        f"    - {_q('fleetcore lint')}",
    ]
    for role, command in role_tests(repo):
        lines += [
            f"{role}-tests:",
            "  stage: test",
            "  image: python:3.12",
            "  script:",
            f"    - {_q('python -m pip install pytest')}",
            f"    - {_q(command)}",
        ]
    return "\n".join(lines) + "\n"


def write_ci(repo: Path, host: str, *, force: bool = False) -> Path:
    """Write the workflow for ``host`` (``github`` or ``gitlab``) into ``repo``;
    refuses to replace an existing file unless ``force``."""
    target = repo / TARGETS[host]
    if target.exists() and not force:
        raise FileExistsError(f"{TARGETS[host]} exists in {repo}; give --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    text = github(repo) if host == "github" else gitlab(repo)
    atomic_write(target, text.encode())
    return target
