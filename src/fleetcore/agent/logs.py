"""Logging for the agent: readable text by default, JSON lines on request,
and journald's native protocol when systemd runs the agent.

JSON lines carry ``device_id``, ``role`` and ``commit`` on every record, so
Loki can index them without parsing messages. Under systemd (its
``JOURNAL_STREAM`` names our stderr) each record goes to the journal as
fields instead: ``MESSAGE``, ``PRIORITY``, ``DEVICE_ID``, ``ROLE``,
``COMMIT``, ``ENVIRONMENT``, ``LOGGER`` and the code location.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import os
import socket
import struct
import sys
from collections import deque
from typing import Any

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "fleetcore_log", default=None
)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def set_context(**fields: Any) -> None:
    """Fields added to every log record from now on (``commit=...``)."""
    _context.set({**(_context.get() or {}), **fields})


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("device_id", "role", "commit"):
            data[key] = getattr(record, key, None)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in data and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        commit = getattr(record, "commit", None)
        where = f" [{commit[:12]}]" if commit else ""
        line = f"{stamp} {record.levelname.lower():7}{where} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


JOURNAL_SOCKET = "/run/systemd/journal/socket"
# syslog priorities, as journalctl -p reads them.
_PRIORITY = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}
JOURNAL_FIELDS = (
    ("device_id", "DEVICE_ID"),
    ("role", "ROLE"),
    ("commit", "COMMIT"),
    ("environment", "ENVIRONMENT"),
)


def journal_socket(environ: Any = None) -> str | None:
    """journald's socket when our stderr is connected to the journal: systemd
    sets ``JOURNAL_STREAM`` to that stream's ``device:inode``. A child whose
    stderr was redirected inherits the variable but not the stream, so both
    must match. ``FLEETCORE_JOURNAL_SOCKET`` names another socket."""
    env = os.environ if environ is None else environ
    stream = env.get("JOURNAL_STREAM")
    if not stream:
        return None
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    if stream != f"{st.st_dev}:{st.st_ino}":
        return None
    return str(env.get("FLEETCORE_JOURNAL_SOCKET") or JOURNAL_SOCKET)


def _field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" in data:
        # The native protocol's binary form: name, newline, little-endian length, data.
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


class JournalHandler(logging.Handler):
    """Records as journal entries over journald's native datagram protocol."""

    def __init__(self, path: str, identifier: str = "fleetcore") -> None:
        super().__init__()
        self.path = path
        self.identifier = identifier
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = {
            "MESSAGE": message,
            "PRIORITY": str(_PRIORITY.get(record.levelname, 6)),
            "SYSLOG_IDENTIFIER": self.identifier,
            "LOGGER": record.name,
            "CODE_FILE": record.pathname,
            "CODE_LINE": str(record.lineno),
            "CODE_FUNC": record.funcName,
        }
        for attr, name in JOURNAL_FIELDS:
            value = getattr(record, attr, None)
            if value:
                fields[name] = str(value)
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            packet = b"".join(_field(k, v) for k, v in self.fields(record).items())
            try:
                self.sock.sendto(packet, self.path)
            except OSError:
                # Too big for one datagram (journald would take a memfd):
                # the first 48 KiB of the message, rather than nothing.
                fields = self.fields(record)
                fields["MESSAGE"] = fields["MESSAGE"][: 48 * 1024]
                self.sock.sendto(b"".join(_field(k, v) for k, v in fields.items()), self.path)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


RECENT = 200
"""Log lines the agent keeps in memory for an operator's "View logs"."""
_recent: deque[str] = deque(maxlen=RECENT)


class RecentLines(logging.Handler):
    """The last :data:`RECENT` records as text lines, whatever else logging
    does with them: what the agent uploads when the server asks."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(TextFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _recent.append(
                dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%Y-%m-%d ")
                + self.format(record)
            )
        except Exception:
            self.handleError(record)


def recent_lines() -> list[str]:
    """The agent's recent log lines, oldest first."""
    return list(_recent)


def configure(fmt: str = "text", level: str = "INFO", stream: Any = None) -> None:
    journal = journal_socket() if stream is None else None
    handler: logging.Handler
    if journal is not None:
        handler = JournalHandler(journal)
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger("fleetcore")
    for old in root.handlers:
        if isinstance(old, JournalHandler):
            old.close()
    recent = RecentLines()
    recent.addFilter(_ContextFilter())
    root.handlers[:] = [handler, recent]
    root.setLevel(level.upper())
    root.propagate = False
