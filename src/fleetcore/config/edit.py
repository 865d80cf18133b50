"""Small, layout-keeping edits to agent.toml (``fleetcore agent enroll``).

The agent stays on four small dependencies, so this is not a general TOML
editor: it changes one line or appends one table, and keeps every other
byte (comments, order, blank lines). Each edit is checked by parsing the
result: the new document must equal the old one plus the change and nothing
else. Any layout it does not recognise (an inline ``server = {...}`` table,
dotted ``server.url`` keys, a multi-line value) is refused with the exact
lines the operator should write, never guessed at.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from fleetcore.errors import FleetcoreError
from fleetcore.files import atomic_write

_HEADER = re.compile(r"^\s*\[\s*server\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")
_URL = re.compile(r"""^(\s*url\s*=\s*)("[^"\\]*"|'[^']*')(\s*(#.*)?)$""")


class EditRefused(FleetcoreError):
    """The file could not be edited safely; ``lines`` is what to add by hand."""

    exit_code = 1

    def __init__(self, path: Path, why: str, lines: str) -> None:
        self.lines = lines
        super().__init__(f"cannot set [server] url in {path}: {why}; add these lines:\n{lines}")


def server_lines(url: str) -> str:
    return f"[server]\nurl = {_quote(url)}"


def _quote(value: str) -> str:
    # A basic string: the URL characters that need escaping are rare, but a
    # stray quote or backslash must not break the file.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def with_server_url(text: str, url: str) -> str:
    """``text`` (an agent.toml) with ``[server] url`` set to ``url``: the
    url line replaced, a url line added under an existing ``[server]``
    header, or a ``[server]`` table appended. Raises ValueError (the reason)
    when the layout is not one of these or the result would differ in more
    than the url."""
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"it is not valid TOML ({exc})") from None
    server = before.get("server")
    if server is not None and not isinstance(server, dict):
        raise ValueError("its `server` key is not a table")
    if server is not None and server.get("url") == url:
        return text
    lines = text.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    if server is None:
        new = text + ("" if not text or text.endswith("\n") else "\n")
        new += ("\n" if text.strip() else "") + server_lines(url) + "\n"
    elif len(headers) == 1:
        start = headers[0] + 1
        end = next((i for i in range(start, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines))
        found = [i for i in range(start, end) if re.match(r"^\s*url\s*=", lines[i])]
        if not found:
            lines.insert(start, f"url = {_quote(url)}\n")
        else:
            match = _URL.match(lines[found[0]].rstrip("\r\n"))
            if match is None:
                raise ValueError("its [server] url is not a one-line string")
            newline = lines[found[0]][len(lines[found[0]].rstrip("\r\n")) :] or "\n"
            lines[found[0]] = match.group(1) + _quote(url) + match.group(3) + newline
        new = "".join(lines)
    else:
        raise ValueError("its [server] table is not written as one `[server]` header")
    _check(before, new, url)
    return new


def _check(before: dict[str, Any], new: str, url: str) -> None:
    try:
        after = tomllib.loads(new)
    except tomllib.TOMLDecodeError:
        raise ValueError("the edited file would not parse") from None
    expected = dict(before)
    expected["server"] = {**before.get("server", {}), "url": url}
    if after != expected:
        raise ValueError("the edit would change more than [server] url")


def plan_server_url(path: Path, url: str) -> str | None:
    """The new content of ``path`` with ``[server] url`` set, or None when it
    is set already; raises :class:`EditRefused` when the file cannot be
    edited (layout, or the folder is not writable for the atomic rename)."""
    text = path.read_text(encoding="utf-8")
    try:
        new = with_server_url(text, url)
    except ValueError as exc:
        raise EditRefused(path, str(exc), server_lines(url)) from None
    if new == text:
        return None
    if not os.access(path.parent, os.W_OK):
        raise EditRefused(path, f"its folder {path.parent} is not writable", server_lines(url))
    return new


def write_config(path: Path, text: str) -> None:
    """Replace ``path`` atomically, keeping its permission bits (agent.toml
    may be readable only by the agent's user)."""
    mode = path.stat().st_mode & 0o7777
    atomic_write(path, text.encode("utf-8"), mode)
    os.chmod(path, mode)
