"""Linter ``shell``: ShellCheck on every shell script, when ShellCheck is installed.

ShellCheck's errors fail the lint; its warnings are shown as warnings. Style
and info notes are left out: they are taste, not bugs a device would hit.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator

from fleetcore.lint.interface import LintContext, Linter, Problem, hookimpl

_SHEBANG = re.compile(rb"^#!\s*\S*(/|env\s+)(ba|da)?sh\b")


def shell_scripts(ctx: LintContext) -> list[str]:
    """``*.sh`` files, and files in roles without an extension whose ``#!``
    line runs sh, bash or dash."""
    found = set(ctx.select("*.sh"))
    for name in ctx.select("roles/*"):
        if name in found or "." in name.rsplit("/", 1)[-1]:
            continue
        try:
            with ctx.path(name).open("rb") as f:
                first = f.readline(200)
        except OSError:
            continue
        if _SHEBANG.match(first):
            found.add(name)
    return sorted(found)


def check_shell(ctx: LintContext) -> Iterator[Problem]:
    shellcheck = shutil.which("shellcheck")
    scripts = shell_scripts(ctx)
    if shellcheck is None or not scripts:
        return
    proc = subprocess.run(
        [shellcheck, "--format=json1", "--severity=warning", "--", *scripts],
        cwd=ctx.repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        comments = json.loads(proc.stdout)["comments"]
    except (ValueError, KeyError):
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        yield Problem(
            path=scripts[0],
            where="shellcheck",
            message=f"ShellCheck failed: {detail[-1] if detail else proc.returncode}",
            code="shellcheck-failed",
        )
        return
    for c in comments:
        yield Problem(
            path=c["file"],
            line=max(1, int(c["line"])),
            where=f"SC{c['code']}",
            message=c["message"],
            severity="error" if c["level"] == "error" else "warning",
            code=f"SC{c['code']}",
        )


@hookimpl
def fleetcore_register_linters() -> Iterator[Linter]:
    yield Linter(
        name="shell", summary="ShellCheck on shell scripts (when installed)", run=check_shell
    )
