"""Hand-off of ``fleetcore agent once`` to a running ``fleetcore agent run``.

A device that runs the agent as a service holds its lock during every
cycle; a one-shot ``agent once`` would find it held and defer. Instead the
service listens on a unix socket in its state folder (``agent.sock``, mode
0600: root-only like the folder), and ``agent once`` asks it to run a cycle
now and waits for that cycle's result, which it prints as its own.

The protocol is one JSON line each way::

    -> {"request": "once"}
    <- {"outcome": ..., "message": ..., "commit": ..., "pending_commit": ...,
        "exit_code": ...}            or  {"error": ..., "exit_code": ...}

The client side uses a few modules of the standard library only (not even
pathlib or logging): it runs before the CLI, the agent, attrs, cattrs or any
plugin is imported, so a hand-off costs little more than starting Python.
The service's side imports what it needs when it starts listening.
"""

from __future__ import annotations

import json
import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable
    from pathlib import Path

SOCKET_NAME = "agent.sock"
TIMEOUT = 900.0
"""How long ``agent once`` waits for the service's cycle (an update with slow
health checks can take minutes)."""
REQUEST_TIMEOUT = 5.0
"""How long the service waits for a connected client's request line."""
_MAX_ADDRESS = 100
"""sun_path holds 108 bytes; longer paths are reached through the folder's fd."""


def socket_path(state_dir: str | os.PathLike[str]) -> str:
    return os.path.join(state_dir, SOCKET_NAME)


def state_dir_of(config_path: str | os.PathLike[str]) -> str | None:
    """``state_dir`` of an agent.toml, read with tomllib alone (relative to
    the file, as the config loader does); None when it cannot be read."""
    import tomllib

    try:
        with open(config_path, "rb") as f:
            value = tomllib.load(f).get("state_dir")
    except (OSError, ValueError):
        return None
    if not isinstance(value, str) or not value:
        return None
    if not os.path.isabs(value):
        folder = os.path.dirname(os.path.abspath(config_path))
        value = os.path.realpath(os.path.join(folder, value))
    return value


def _with_address(path: str, action: Callable[[str], None]) -> None:
    """``action`` (bind or connect) on a name for ``path`` short enough for sun_path."""
    if len(os.fsencode(path)) < _MAX_ADDRESS:
        action(path)
        return
    folder, name = os.path.split(path)
    fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
    try:
        action(f"/proc/self/fd/{fd}/{name}")
    finally:
        os.close(fd)


def _connect(path: str, timeout: float) -> socket.socket | None:
    """A connection to the service listening on ``path``; None when nothing
    listens there (no socket file, a stale one, or no permission)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        _with_address(path, sock.connect)
    except OSError:
        sock.close()
        return None
    return sock


def ask(config_path: str | os.PathLike[str], timeout: float = TIMEOUT) -> dict[str, Any] | None:
    """Ask the running service to run a cycle now and return its result;
    None when no service listens (then run the cycle in this process)."""
    state_dir = state_dir_of(config_path)
    if state_dir is None:
        return None
    sock = _connect(socket_path(state_dir), timeout)
    if sock is None:
        return None
    with sock:
        try:
            sock.sendall(b'{"request": "once"}\n')
            with sock.makefile("rb") as reader:
                line = reader.readline()
        except TimeoutError:
            return {
                "error": f"the agent service did not report its cycle within {timeout:.0f}s",
                "exit_code": 3,
            }
        except OSError:
            return None
    try:
        reply = json.loads(line) if line else None
    except ValueError:
        reply = None
    # No answer: the service stopped before its cycle; run it here instead.
    return reply if isinstance(reply, dict) and "exit_code" in reply else None


def render(reply: dict[str, Any], as_json: bool) -> tuple[str, bool]:
    """What ``agent once`` prints for a cycle's result, and whether it goes
    to stderr (an error that ended the cycle)."""
    if "error" in reply:
        return f"error: {reply['error']}", True
    if as_json:
        data = {k: reply.get(k) for k in ("outcome", "message", "commit", "pending_commit")}
        data["exit_code"] = int(reply["exit_code"])
        return json.dumps(data, indent=2, default=str), False
    return f"{reply['outcome']}: {reply['message']}", False


class Listener:
    """The service's end: accepts requests, wakes the loop, and answers each
    with the result of the first cycle that starts after it arrived."""

    def __init__(self, state_dir: Path, wake: Callable[[], None]) -> None:
        import threading
        from pathlib import Path

        self.path = Path(socket_path(state_dir))
        self.wake = wake
        self._lock = threading.Lock()
        self._waiting: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._inode = 0

    def start(self) -> bool:
        """Listen; False (logged) when the socket cannot be made."""
        import logging
        import threading

        log = logging.getLogger("fleetcore.agent")
        path = self.path
        if path.exists() or path.is_symlink():
            live = _connect(str(path), 1.0)
            if live is not None:
                live.close()
                log.error("another agent service listens on %s: `agent once` hands off to it", path)
                return False
            path.unlink(missing_ok=True)
            log.info("removed the stale socket %s of a stopped agent service", path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _with_address(str(tmp), server.bind)
            os.chmod(tmp, 0o600)
            server.listen(8)
            # Published under its name only once it listens: a client that
            # finds the name refused is then sure nothing serves it.
            os.replace(tmp, path)
            self._inode = os.stat(path).st_ino
        except OSError as exc:
            server.close()
            tmp.unlink(missing_ok=True)
            log.error("`agent once` cannot hand off to this service: %s", exc)
            return False
        self._server = server
        self._thread = threading.Thread(target=self._serve, name="handoff", daemon=True)
        self._thread.start()
        return True

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed
            try:
                conn.settimeout(REQUEST_TIMEOUT)
                with conn.makefile("rb") as reader:
                    request = json.loads(reader.readline() or b"null")
                conn.settimeout(None)
            except (OSError, ValueError):
                conn.close()
                continue
            if not isinstance(request, dict) or request.get("request") != "once":
                conn.close()
                continue
            with self._lock:
                self._waiting.append(conn)
            self.wake()

    def pending(self) -> bool:
        with self._lock:
            return bool(self._waiting)

    def take(self) -> list[socket.socket]:
        """The clients waiting now: they get the cycle about to start."""
        with self._lock:
            taken, self._waiting = self._waiting, []
        return taken

    @staticmethod
    def answer(clients: list[socket.socket], reply: dict[str, Any]) -> None:
        data = json.dumps(reply).encode() + b"\n"
        for conn in clients:
            try:
                conn.sendall(data)
            except OSError:
                pass  # the client gave up waiting
            finally:
                conn.close()

    def close(self) -> None:
        """Stop listening; clients still waiting get no answer and run their
        cycle themselves."""
        import contextlib

        if self._server is None:
            return
        try:
            if os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except OSError:
            pass
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        if self._thread is not None:
            self._thread.join(5)
        for conn in self.take():
            conn.close()
        self._server = None
