"""The HTTP API, one route list per area (as :mod:`fleetcore.server.pages`
does for the dashboard), and what every handler shares.

Handlers are thin: they authenticate, parse the body with the strict
converter and hand over to the services in a worker thread (the database
driver and git block). :func:`guarded` turns every refusal into the API's
JSON error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fleetcore.errors import ConfigError, FetchError
from fleetcore.server import bodies as b
from fleetcore.server.auth import Caller, Operator
from fleetcore.server.service import Control

log = logging.getLogger("fleetcore.server")
T = TypeVar("T")


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


async def read_json(request: Request, limit: int) -> Any:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise b.ApiError(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise b.ApiError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise b.ApiError(400, f"malformed JSON: {exc}") from None


def guarded(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            result: Response = await fn(request)
            return result
        except b.ApiError as exc:
            return JSONResponse(exc.json(), status_code=exc.status)
        except ConfigError as exc:
            first = exc.problems[0] if exc.problems else str(exc)
            return error(400, "; ".join(exc.problems), first.rpartition(" @ ")[2] or None)
        except FetchError as exc:
            return error(502, str(exc))
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return error(500, "internal error; see the server's log")

    return endpoint


async def call(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread."""
    return await run_in_threadpool(fn, *args)


def numeric(request: Request, param: str, what: str) -> int:
    """A path parameter that must be a whole number (a 400 naming ``id`` if not)."""
    raw = request.path_params[param]
    if not raw.isdigit():
        raise b.ApiError(400, f"not a {what} id: {raw!r}", "id")
    return int(raw)


class Api:
    """What handlers ask of a request: who sends it, and its body."""

    def __init__(self, ctl: Control, limit: int) -> None:
        self.ctl = ctl
        self.limit = limit

    async def caller(self, request: Request) -> Caller:
        return await call(self.ctl.authenticate, request.headers.get("authorization"))

    async def operator(self, request: Request, role: str = "viewer") -> Operator:
        return self.ctl.operator(await self.caller(request), role)

    async def body(self, request: Request, cls: type[T]) -> T:
        return b.parse(await read_json(request, self.limit), cls)

    async def body_or_empty(self, request: Request, cls: type[T]) -> T:
        """The body, where it is optional (a reason): none reads as ``{}``."""
        has_body = request.headers.get("content-length", "0") != "0" or (
            "transfer-encoding" in request.headers
        )
        raw = await read_json(request, self.limit) if has_body else {}
        return b.parse(raw, cls)
