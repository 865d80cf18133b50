"""A real HTTP receiver for webhooks on a loopback port, for tests.

>>> hook = WebhookReceiver.start()
>>> hook.url                      # http://127.0.0.1:PORT/hook
>>> hook.fail_next(2)             # the next two requests get a 503
>>> hook.hang = 30.0              # each request waits 30s before answering
>>> hook.wait_for(lambda body: ...)   # the first JSON body that matches
>>> hook.stop()

It answers like any small service behind a webhook URL: 204 for a JSON
body, 400 for anything else, and records what it got (the JSON bodies, the
headers and how many requests came, failed ones included).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.requests = 0
        self.hang = 0.0
        self._failing = 0
        self._lock = threading.Condition()
        self._stopped = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests += 1
                    failing = receiver._failing > 0
                    receiver._failing -= failing
                if receiver.hang:
                    receiver._stopped.wait(receiver.hang)
                if failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.headers.append(dict(self.headers))
                    receiver._lock.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="webhook-receiver", daemon=True
        )

    @classmethod
    def start(cls) -> WebhookReceiver:
        receiver = cls()
        receiver._thread.start()
        return receiver

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failing = count

    def wait_for(self, match: Callable[[Any], bool], timeout: float = 30.0) -> Any:
        """The first body received that ``match`` accepts, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                hit = next((b for b in self.bodies if match(b)), None)
                left = deadline - time.monotonic()
                if hit is not None or left <= 0:
                    return hit
                self._lock.wait(left)

    def stop(self) -> None:
        self._stopped.set()
        self.server.shutdown()
        self.server.server_close()
