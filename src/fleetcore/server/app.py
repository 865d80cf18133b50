"""The Starlette application: routes, background tasks, lifecycle.

Handlers are thin: they authenticate, parse the body with the strict
converter and hand over to :class:`~fleetcore.server.service.Control` in a
worker thread (the database driver and git block).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from attrs import frozen
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetcore.channels.select import server_channels
from fleetcore.errors import ConfigError, FetchError
from fleetcore.plugin.manager import PluginManager
from fleetcore.server import bodies as b
from fleetcore.server.auth import Operator
from fleetcore.server.channels import ChannelPump
from fleetcore.server.events import EventHub
from fleetcore.server.groupcommit import GroupCommit
from fleetcore.server.metrics import Latencies, render
from fleetcore.server.mirror import COMMIT_RE, Mirror
from fleetcore.server.service import Control
from fleetcore.server.store import Store, database_url

log = logging.getLogger("fleetcore.server")
T = TypeVar("T")


@frozen(kw_only=True)
class ServerConfig:
    data_dir: Path
    repo: str
    db_url: str | None = None
    offline_after: float = 180.0
    tick_interval: float = 5.0
    fetch_interval: float = 60.0
    keepalive: float = 15.0
    max_body: int = 1024 * 1024
    now: Callable[[], dt.datetime] | None = None
    events: tuple[str, ...] = ()
    """Event channels besides SSE (``--events``): URLs or channel names."""


SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies must pass events on at once
]

# -- plumbing ------------------------------------------------------------------------


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


class Timing:
    """Request latencies by route template (not by raw path: ids would explode
    the label set)."""

    def __init__(self, app: ASGIApp, latencies: Latencies, routes: list[Route]) -> None:
        self.app = app
        self.latencies = latencies
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                # SSE streams last for hours: their latency is the time to open them.
                self.latencies.observe(
                    scope["method"], self._route(scope), status[0], time.perf_counter() - start
                )
            await send(message)

        await self.app(scope, receive, capture)

    def _route(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match.name == "FULL":
                return route.path
        return "other"


# -- the application -------------------------------------------------------------------


def build(config: ServerConfig, pm: PluginManager | None = None) -> tuple[Starlette, Control]:
    store = Store(database_url(config.data_dir, config.db_url))
    mirror = Mirror(config.data_dir / "mirror.git", config.repo)
    try:
        mirror.fetch()
    except FetchError as exc:
        log.warning("fleet repo not reachable yet: %s", exc)
    hub = EventHub(keepalive=config.keepalive)
    pm = pm or PluginManager()
    channels = [
        ChannelPump(s.label, s.record.publisher(s.options))
        for s in server_channels(pm, config.events)
    ]
    for channel in channels:
        log.info("sending events over %s too", channel.label)
    ctl = Control(
        store,
        mirror,
        pm,
        now=config.now,
        offline_after=config.offline_after,
        hub=hub,
        channels=channels,
    )
    from fleetcore.server.secrets import RoleSecrets, SecretRequest, load_key

    secrets = RoleSecrets(ctl, load_key(config.data_dir))
    reports = GroupCommit(ctl.report_status_batch, name="status-writer")
    latencies = Latencies()
    limit = config.max_body

    async def call(fn: Callable[..., T], *args: Any) -> T:
        return await run_in_threadpool(fn, *args)

    async def caller(request: Request) -> Any:
        return await call(ctl.authenticate, request.headers.get("authorization"))

    async def operator(request: Request, role: str = "viewer") -> Operator:
        return ctl.operator(await caller(request), role)

    async def body(request: Request, cls: type[T]) -> tuple[T, Any]:
        raw = await read_json(request, limit)
        return b.parse(raw, cls), raw

    # -- device API --

    @guarded
    async def enroll(request: Request) -> Response:
        req, _ = await body(request, b.EnrollRequest)
        return JSONResponse(await call(ctl.enroll, req), status_code=201)

    @guarded
    async def desired(request: Request) -> Response:
        fast = ctl.not_modified(
            request.headers.get("authorization"),
            request.path_params["device_id"],
            request.headers.get("if-none-match"),
        )
        if fast is not None:
            return Response(status_code=304, headers={"ETag": fast})
        # Otherwise a poll that hits the ETag costs the credential lookup and one row.
        etag, data = await call(
            ctl.poll_desired,
            request.headers.get("authorization"),
            request.path_params["device_id"],
            request.headers.get("if-none-match"),
        )
        if data is None:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(data, headers={"ETag": etag, "Cache-Control": "no-cache"})

    @guarded
    async def status(request: Request) -> Response:
        raw = await read_json(request, limit)
        header = request.headers.get("authorization")
        await reports.submit(header, request.path_params["device_id"], raw)
        return Response(status_code=204)

    @guarded
    async def add_history(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        who = await caller(request)
        await call(ctl.device_access, who, device_id, True)
        req, _ = await body(request, b.HistoryBody)
        await call(ctl.add_history, device_id, req)
        return Response(status_code=204)

    open_stream = Response(status_code=200)  # a marker: the checks passed

    @guarded
    async def may_listen(request: Request) -> Response:
        who = await caller(request)
        await call(ctl.device_access, who, request.path_params["device_id"])
        return open_stream

    class Events:
        """The event stream, as a plain ASGI endpoint rather than a
        StreamingResponse (whose task group and tasks, times thousands of
        idle streams, make every full garbage collection pass long). Its
        checks go through ``guarded`` like every other endpoint's."""

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            refusal = await may_listen(Request(scope))
            if refusal is not open_stream:
                await refusal(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await hub.serve(scope["path_params"]["device_id"], receive, send)

    def _commit_role(request: Request) -> tuple[str, str]:
        commit, role = request.path_params["commit"], request.path_params["role"]
        if not COMMIT_RE.match(commit):
            raise b.ApiError(400, f"not a full commit id: {commit!r}", "commit")
        if not b.ID_RE.match(role):
            raise b.ApiError(400, f"not a role name: {role!r}", "role")
        if mirror.resolve(commit) != commit:
            raise b.ApiError(404, f"unknown commit {commit}", "commit")
        if not mirror.has_role(commit, role):
            raise b.ApiError(404, f"commit {commit[:12]} has no folder roles/{role}", "role")
        return commit, role

    @guarded
    async def archive(request: Request) -> Response:
        await caller(request)
        commit, role = await call(_commit_role, request)
        path = await call(mirror.archive, commit, role)
        return file_response(
            request, path, Mirror.etag("archive", commit, role), "application/x-tar"
        )

    @guarded
    async def manifest(request: Request) -> Response:
        await caller(request)
        commit, role = await call(_commit_role, request)
        data = (await call(mirror.manifest, commit, role)).to_json()
        etag = Mirror.etag("manifest", commit, role)
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(data, headers={"ETag": etag})

    # -- operator API --

    @guarded
    async def fleet_status(request: Request) -> Response:
        await operator(request)
        return JSONResponse(await call(ctl.fleet_status))

    @guarded
    async def list_devices(request: Request) -> Response:
        await operator(request)
        return JSONResponse({"devices": await call(ctl.devices)})

    @guarded
    async def get_device(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        who = await caller(request)
        await call(ctl.device_access, who, device_id)
        return JSONResponse(await call(ctl.device, device_id))

    @guarded
    async def rollouts(request: Request) -> Response:
        if request.method == "GET":
            await operator(request)
            return JSONResponse({"rollouts": await call(ctl.rollouts)})
        op = await operator(request, "operator")
        req, _ = await body(request, b.RolloutRequest)
        return JSONResponse(await call(ctl.start_rollout, op, req), status_code=201)

    def _rollout_id(request: Request) -> int:
        raw = request.path_params["rollout_id"]
        if not raw.isdigit():
            raise b.ApiError(400, f"not a rollout id: {raw!r}", "id")
        return int(raw)

    @guarded
    async def rollout(request: Request) -> Response:
        await operator(request)
        return JSONResponse(await call(ctl.rollout, _rollout_id(request)))

    @guarded
    async def rollout_action(request: Request) -> Response:
        op = await operator(request, "operator")
        action = request.path_params["action"]
        if action not in ("promote", "halt", "resume", "abort"):
            raise b.ApiError(404, f"unknown rollout action {action!r}", "action")
        req, _ = await body_or_empty(request, b.ActionRequest)
        data = await call(ctl.rollout_action, op, _rollout_id(request), action, req.reason)
        return JSONResponse(data)

    async def body_or_empty(request: Request, cls: type[T]) -> tuple[T, Any]:
        raw = await read_json(request, limit) if await _has_body(request) else {}
        return b.parse(raw, cls), raw

    async def _has_body(request: Request) -> bool:
        return request.headers.get("content-length", "0") != "0" or (
            "transfer-encoding" in request.headers
        )

    @guarded
    async def pin(request: Request) -> Response:
        op = await operator(request, "admin")
        if request.method == "DELETE":
            req, _ = await body_or_empty(request, b.ActionRequest)
            await call(ctl.unpin, op, req)
            return Response(status_code=204)
        preq, _ = await body(request, b.PinRequest)
        return JSONResponse(await call(ctl.pin, op, preq))

    @guarded
    async def window(request: Request) -> Response:
        op = await operator(request, "admin")
        req, _ = await body(request, b.WindowRequest)
        return JSONResponse({"maintenance_window": await call(ctl.set_window, op, req)})

    @guarded
    async def lock(request: Request) -> Response:
        op = await operator(request, "admin")
        device_id = request.path_params["device_id"]
        if request.method == "DELETE":
            req, _ = await body_or_empty(request, b.ActionRequest)
            await call(ctl.unlock, op, device_id, req)
        else:
            lreq, _ = await body(request, b.LockRequest)
            await call(ctl.lock, op, device_id, lreq)
        return JSONResponse(await call(ctl.device, device_id))

    @guarded
    async def override(request: Request) -> Response:
        op = await operator(request, "admin")
        device_id = request.path_params["device_id"]
        req, _ = await body(request, b.OverrideRequest)
        await call(ctl.override, op, device_id, req)
        return JSONResponse(await call(ctl.device, device_id))

    @guarded
    async def audit(request: Request) -> Response:
        await operator(request)
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit():
            raise b.ApiError(400, f"limit must be a whole number, got {raw!r}", "limit")
        return JSONResponse({"audit": await call(ctl.audit_log, min(int(raw), 1000))})

    @guarded
    async def resume(request: Request) -> Response:
        op = await operator(request, "operator")
        req, _ = await body_or_empty(request, b.ActionRequest)
        count = await call(ctl.resume, op, request.path_params["device_id"], req)
        return JSONResponse({"device_id": request.path_params["device_id"], "resume": count})

    @guarded
    async def device_secrets(request: Request) -> Response:
        who = await caller(request)
        values = await call(secrets.for_device, who, request.path_params["device_id"])
        return JSONResponse({"values": values}, headers={"Cache-Control": "no-store"})

    @guarded
    async def role_secrets(request: Request) -> Response:
        role = request.path_params["role"]
        return JSONResponse(
            {"role": role, "secrets": await call(secrets.names, await operator(request), role)}
        )

    @guarded
    async def role_secret(request: Request) -> Response:
        op = await operator(request, "admin")
        role, name = request.path_params["role"], request.path_params["name"]
        if request.method == "DELETE":
            req, _ = await body_or_empty(request, b.ActionRequest)
            await call(secrets.unset, op, role, name, req.reason)
            return Response(status_code=204)
        sreq, _ = await body(request, SecretRequest)
        return JSONResponse(await call(secrets.set, op, role, name, sreq))

    @guarded
    async def tokens(request: Request) -> Response:
        op = await operator(request, "admin")
        if request.method == "GET":
            return JSONResponse({"tokens": await call(ctl.tokens, op)})
        req, _ = await body(request, b.TokenRequest)
        return JSONResponse(await call(ctl.create_token, op, req), status_code=201)

    @guarded
    async def revoke_token(request: Request) -> Response:
        op = await operator(request, "admin")
        raw = request.path_params["token_id"]
        if not raw.isdigit():
            raise b.ApiError(400, f"not a token id: {raw!r}", "id")
        req, _ = await body_or_empty(request, b.ActionRequest)
        return JSONResponse(await call(ctl.revoke_token, op, int(raw), req))

    @guarded
    async def revoke_device(request: Request) -> Response:
        op = await operator(request, "admin")
        device_id = request.path_params["device_id"]
        req, _ = await body_or_empty(request, b.ActionRequest)
        await call(ctl.revoke_device, op, device_id, req)
        return JSONResponse(await call(ctl.device, device_id))

    @guarded
    async def git_hook(request: Request) -> Response:
        # Git servers' push hooks often cannot send headers: ?token= works too.
        header = request.headers.get("authorization")
        if header is None and "token" in request.query_params:
            header = f"Bearer {request.query_params['token']}"
        ctl.operator(await call(ctl.authenticate, header), "operator")
        return JSONResponse({"branches": await call(mirror.fetch)})

    @guarded
    async def metrics(request: Request) -> Response:
        text = await call(render, ctl, latencies)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def bare(request: Request) -> Response:
        # For benchmarks: the cost of the HTTP stack alone.
        return Response(status_code=204)

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        return error(code, getattr(exc, "detail", "") or "not found")

    routes = [
        Route("/v1/enroll", enroll, methods=["POST"]),
        Route("/v1/devices/{device_id}/desired", desired, methods=["GET"]),
        Route("/v1/devices/{device_id}/status", status, methods=["POST"]),
        Route("/v1/devices/{device_id}/history", add_history, methods=["POST"]),
        Route("/v1/devices/{device_id}/events", Events(), methods=["GET"]),
        Route("/v1/devices/{device_id}/lock", lock, methods=["PUT", "DELETE"]),
        Route("/v1/devices/{device_id}/override", override, methods=["PUT"]),
        Route("/v1/devices/{device_id}", get_device, methods=["GET"]),
        Route("/v1/devices", list_devices, methods=["GET"]),
        Route("/v1/archives/{commit}/{role}", archive, methods=["GET"]),
        Route("/v1/manifests/{commit}/{role}", manifest, methods=["GET"]),
        Route("/v1/fleet/status", fleet_status, methods=["GET"]),
        Route("/v1/fleet/pin", pin, methods=["PUT", "DELETE"]),
        Route("/v1/fleet/maintenance-window", window, methods=["PUT"]),
        Route("/v1/rollouts", rollouts, methods=["GET", "POST"]),
        Route("/v1/rollouts/{rollout_id}", rollout, methods=["GET"]),
        Route("/v1/rollouts/{rollout_id}/{action}", rollout_action, methods=["POST"]),
        Route("/v1/audit", audit, methods=["GET"]),
        Route("/v1/devices/{device_id}/secrets", device_secrets, methods=["GET"]),
        Route("/v1/devices/{device_id}/resume", resume, methods=["POST"]),
        Route("/v1/devices/{device_id}/revoke", revoke_device, methods=["POST"]),
        Route("/v1/secrets/{role}", role_secrets, methods=["GET"]),
        Route("/v1/secrets/{role}/{name}", role_secret, methods=["PUT", "DELETE"]),
        Route("/v1/tokens", tokens, methods=["GET", "POST"]),
        Route("/v1/tokens/{token_id}", revoke_token, methods=["DELETE"]),
        Route("/v1/hooks/git", git_hook, methods=["POST"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/bare", bare, methods=["POST", "GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    from fleetcore.server.pages import page_routes

    routes += page_routes(ctl)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        from fleetcore.server.rollouts import run_engine

        hub.bind(asyncio.get_running_loop())
        if ctl.relay is not None:
            ctl.relay.start()
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(run_engine(ctl, config.tick_interval, stop)),
            asyncio.create_task(_fetch_loop(mirror, config.fetch_interval, stop)),
        ]
        try:
            yield
        finally:
            stop.set()
            hub.close_all()
            await asyncio.gather(*tasks, return_exceptions=True)
            if ctl.relay is not None:
                await asyncio.to_thread(ctl.relay.stop)
            for channel in ctl.channels:
                await asyncio.to_thread(channel.close)
            await asyncio.to_thread(reports.close)

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found}
    )
    app.add_middleware(Timing, latencies=latencies, routes=routes)
    return app, ctl


async def _fetch_loop(mirror: Mirror, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
            return
        except TimeoutError:
            pass
        try:
            await asyncio.to_thread(mirror.fetch)
        except FetchError as exc:
            log.warning("fetching the fleet repo failed: %s", exc)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def file_response(request: Request, path: Path, etag: str, media_type: str) -> Response:
    """A file with ETag and one byte range: an interrupted download resumes."""
    size = path.stat().st_size
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "private, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    start, end = 0, size - 1
    status = 200
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if wanted and (if_range is None or if_range == etag):
        match = _RANGE.match(wanted.strip())
        if match is None or match.groups() == ("", ""):
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
            )
        first, last = match.groups()
        if first:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        else:
            start = max(size - int(last), 0)
        if start >= size or start > end:
            return Response(
                status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"}
            )
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)

    def chunks() -> Any:
        with path.open("rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                data = fh.read(min(65536, left))
                if not data:
                    return
                left -= len(data)
                yield data

    return StreamingResponse(chunks(), status_code=status, headers=headers, media_type=media_type)


def serve(config: ServerConfig, host: str, port: int, pm: PluginManager | None = None) -> None:
    import uvicorn

    app, _ = build(config, pm)
    # Everything built so far lives as long as the server process: keep it
    # out of the collector's full passes, which otherwise scan it all and
    # stall requests for tens of milliseconds (the p99 of status reports).
    gc.freeze()
    # Event streams never end by themselves: give them a few seconds at shutdown.
    uvicorn.run(
        app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=5
    )
