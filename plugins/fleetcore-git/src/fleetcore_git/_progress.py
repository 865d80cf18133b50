"""git's own progress report, read as it streams (private: not an API).

With ``--progress`` git writes lines like ``Receiving objects:  45%
(450/1000), 1.20 MiB | 2.40 MiB/s`` on stderr, each update ending in a
carriage return. :func:`run_git_with_progress` reads stderr as it arrives,
hands the bytes received so far to a meter, and keeps every other line as the
error text, so a failed fetch reads exactly as it does without progress.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from typing import IO

from fleetcore.errors import FetchError
from fleetcore_git._common import GitResult, git_env, kill_group, redact

Update = Callable[[int], None]

_RECEIVING = re.compile(
    r"^(?:Receiving|Unpacking) objects: +(?P<percent>\d+)% \(\d+/\d+\)"
    r"(?:, (?P<amount>\d+(?:\.\d+)?) (?P<unit>bytes?|KiB|MiB|GiB))?"
)
_UNITS = {"byte": 1, "bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
# Lines git prints only because progress was asked for (its own and the
# server's, after "remote: "), and the summary of updated refs that
# --quiet would have kept back (but not " ! " lines: refused updates): left
# out of the error text.
_NOISE = re.compile(
    r"^(?:(?:remote: )?(?:Enumerating objects|Counting objects|Compressing objects|"
    r"Receiving objects|Resolving deltas|Unpacking objects|Checking objects|"
    r"Checking connectivity|Total \d+)|From | [-*+=t ] )"
)


def received(line: str) -> tuple[int, int | None] | None:
    """``(percent, bytes or None)`` of a "Receiving objects" line, else None.
    git shows the bytes only once it has measured a rate (after half a second)."""
    match = _RECEIVING.match(line)
    if match is None:
        return None
    amount = match["amount"]
    size = int(float(amount) * _UNITS[match["unit"]]) if amount is not None else None
    return int(match["percent"]), size


def run_git_with_progress(
    args: Sequence[str],
    *,
    action: str,
    url: str,
    timeout: float,
    meter: Callable[[], Update],
) -> GitResult:
    """Run ``git args`` (``fetch --progress``) as
    :func:`fleetcore_git._common.run_git` does, feeding the bytes received to
    the update ``meter()`` makes (once, at git's first "Receiving objects"
    line that shows bytes). stdout is discarded; stderr comes back without
    the progress lines."""
    import signal
    import subprocess
    import threading

    kept: list[str] = []
    state: dict[str, Update] = {}

    def line(text: str) -> None:
        text = text.rstrip()
        seen = received(text)
        if seen is not None and seen[1] is not None:
            try:
                if "update" not in state:
                    state["update"] = meter()
                state["update"](seen[1])
            except Exception:
                # A meter is for show: one that breaks (a closed terminal)
                # must not stop this thread, or git would block on a full pipe.
                state["update"] = _ignore
        if text and not _NOISE.match(text):
            kept.append(text)

    try:
        proc = subprocess.Popen(
            ["git", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=git_env(),
            start_new_session=True,
        )
    except FileNotFoundError:
        raise FetchError("git is not installed (the `git` command was not found)") from None
    assert proc.stderr is not None
    reader = threading.Thread(target=_read_lines, args=(proc.stderr, line), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except BaseException as exc:
        kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise FetchError(
                f"{action} {redact(url)} failed: git did not finish within {timeout:g}s"
            ) from None
        raise
    finally:
        # Helpers (ssh, git-remote-http) may hold stderr a moment longer;
        # closing it under a reader that is still busy would wait for it.
        reader.join(timeout=5)
        if not reader.is_alive():
            proc.stderr.close()
    stderr = "".join(f"{text}\n" for text in kept)
    return GitResult(proc.returncode, b"", stderr)


def _ignore(_done: int) -> None:
    pass


def _read_lines(stream: IO[bytes], line: Callable[[str], None]) -> None:
    """Call ``line`` with each line of ``stream`` as it arrives; git ends a
    progress update with a carriage return, anything else with a newline."""
    pending = b""
    # read1: whatever is there now, not a full buffer (updates must not wait).
    while chunk := stream.read1(65536):  # type: ignore[attr-defined]
        pending += chunk
        *lines, pending = re.split(rb"\r\n|\r|\n", pending)
        for raw in lines:
            line(raw.decode("utf-8", "replace"))
    if pending:
        line(pending.decode("utf-8", "replace"))
