"""Running a role's scripts: one way for the activator and the script checks.

Scripts are executed directly (their ``#!`` line picks the interpreter), in
the release folder, with stdout and stderr going to an unnamed temporary
file rather than a pipe: a service that ``activate.sh`` starts in the
background inherits that output, and with a pipe we would either wait for
it to exit or kill it with SIGPIPE when we stopped reading.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from attrs import frozen

from fleetcore.errors import FleetcoreError
from fleetcore.plugin.options import Duration
from fleetcore.plugin.types import CheckContext, Finding

TAIL_LINES = 5
"""Lines of a failed script's output put into its error message."""
TAIL_BYTES = 8192
LINE_CHARS = 300
KILL_GRACE = 2.0
"""Seconds between SIGTERM and SIGKILL for a script that ran out of time."""


class ScriptError(FleetcoreError):
    """A script could not be run at all (missing, not executable, bad ``#!``)."""


@frozen(kw_only=True)
class ScriptResult:
    name: str
    returncode: int | None
    """``None`` when the script ran out of time and was stopped."""
    timeout: Duration
    tail: str
    """The last lines of its output, joined with `` | ``."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def outcome(self) -> str:
        if self.returncode is None:
            return f"timed out after {self.timeout}"
        if self.returncode < 0:
            return f"failed (killed by signal {-self.returncode})"
        return f"failed (exit {self.returncode})"

    def message(self) -> str:
        """``validate.sh failed (exit 2): last | lines`` for a failed run."""
        output = f": {self.tail}" if self.tail else " with no output"
        return f"{self.name} {self.outcome}{output}"


def run_script(
    release_dir: Path, name: str, *, env: Mapping[str, str], timeout: Duration
) -> ScriptResult:
    """Run ``release_dir/name`` with the agent's environment plus ``env``."""
    path = release_dir / name
    if not path.is_file():
        raise ScriptError(f"{name} not found in {release_dir}")
    if not os.access(path, os.X_OK):
        raise ScriptError(
            f"{name} is not executable: give it a #! line and the executable bit "
            f"(git update-index --chmod=+x {name})"
        )
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                [str(path)],
                cwd=release_dir,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own process group, so a timeout stops everything it started.
                start_new_session=True,
            )
        except OSError as exc:
            raise ScriptError(
                f"{name} could not be started: {exc.strerror or exc} (does it have a #! line?)"
            ) from None
        try:
            returncode: int | None = proc.wait(timeout=timeout.seconds)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            returncode = None
        return ScriptResult(name=name, returncode=returncode, timeout=timeout, tail=_tail(out))


def run_script_check(ctx: CheckContext, script: str) -> list[Finding]:
    """Run ``script`` of the release as a check: exit 0 passes, anything else
    is one finding about the script with the last lines of its output."""
    try:
        result = run_script(ctx.release_dir, script, env=ctx.env, timeout=ctx.options.timeout)
    except ScriptError as exc:
        return [Finding(message=str(exc), subject=script)]
    if result.ok:
        return []
    return [Finding(message=result.message(), subject=script)]


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=KILL_GRACE)
    # Whatever is left of the group, the script included, gets no more grace.
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has already exited
        os.killpg(pgid, sig)


def _tail(out: IO[bytes]) -> str:
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - TAIL_BYTES))
    text = out.read().decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if size > TAIL_BYTES and len(lines) > 1:
        lines = lines[1:]  # the first line was probably cut in half
    return " | ".join(line[:LINE_CHARS] for line in lines[-TAIL_LINES:])
