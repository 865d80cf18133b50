"""The Starlette application, assembled: the route lists of each area
(:mod:`fleetcore.server.routes` and the dashboard's pages), the timing
middleware, and the lifespan that runs the rollout engine and the fleet
repo's fetch loop next to the event relay and channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import resource
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from attrs import frozen
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fleetcore.alerts.select import server_alert_channels
from fleetcore.channels.select import server_channels
from fleetcore.errors import ConfigError, FetchError
from fleetcore.plugin.manager import PluginManager
from fleetcore.server.alerts import AlertPump, sink
from fleetcore.server.bodies import ApiError
from fleetcore.server.branches import fetch_repo
from fleetcore.server.channels import ChannelPump
from fleetcore.server.engine import run_engine
from fleetcore.server.events import EventHub
from fleetcore.server.first_release import initial_release
from fleetcore.server.groupcommit import GroupCommit
from fleetcore.server.metrics import Latencies
from fleetcore.server.mirror import Mirror
from fleetcore.server.openapi import document
from fleetcore.server.pacing import DEFAULT_WAKE_RATE
from fleetcore.server.pages import page_routes
from fleetcore.server.routes import Api, error
from fleetcore.server.routes.device_api import device_routes
from fleetcore.server.routes.enrollment_api import enrollment_routes
from fleetcore.server.routes.incident_api import incident_routes
from fleetcore.server.routes.operator_api import operator_routes
from fleetcore.server.routes.secrets_api import secret_routes
from fleetcore.server.routes.system import system_routes
from fleetcore.server.secrets import RoleSecrets, load_key
from fleetcore.server.service import Control
from fleetcore.server.store import Store, database_url

log = logging.getLogger("fleetcore.server")


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
    device_metrics: bool = True
    """Per-device series on /metrics (``--no-device-metrics`` turns them off)."""
    page_refresh: float = 10.0
    """Seconds between an open dashboard page's refreshes (``--page-refresh``)."""
    events: tuple[str, ...] = ()
    """Event channels besides SSE (``--events``): URLs or channel names."""
    max_streams: int = 0
    """Event streams held at most (``--max-streams``); 0: what the process's
    file-descriptor limit leaves after a reserve for everything else."""
    wake_rate: int = DEFAULT_WAKE_RATE
    """Devices told a second at most when a change moves many (``--wake-rate``;
    0: all at once). See pacing.py."""
    alerts: tuple[str, ...] = ()
    """Alert channels (``--alerts``): URLs or channel names."""
    initial_release: str | None = None
    """``--initial-release``: a branch or commit recorded as the finished
    release of every role that has none (see first_release.py)."""


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
    hub = EventHub(keepalive=config.keepalive, max_streams=config.max_streams or stream_room())
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
        wake_rate=config.wake_rate,
    )
    alert_pumps = [
        AlertPump(s.label, s.record.sender(s.options))
        for s in server_alert_channels(pm, config.alerts)
    ]
    for pump in alert_pumps:
        log.info("sending alerts to %s", pump.label)
    if alert_pumps:
        ctl.alert_sink = sink(alert_pumps)
        ctl.alert_pumps = tuple(alert_pumps)
    if config.initial_release:
        try:
            initial_release(ctl, config.initial_release)
        except ApiError as exc:
            raise ConfigError("--initial-release", [exc.message]) from None
    secrets = RoleSecrets(ctl, load_key(config.data_dir))
    writes = GroupCommit(ctl.write_device_batch, name="device-writer")
    latencies = Latencies(device_metrics=config.device_metrics)
    api = Api(ctl, config.max_body)
    routes = [
        *device_routes(api, writes),
        *operator_routes(api),
        *incident_routes(api),
        *enrollment_routes(api),
        *secret_routes(api, secrets),
        *system_routes(ctl, latencies),
        *page_routes(ctl, refresh=config.page_refresh),
    ]
    routes.append(openapi_route(routes))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        hub.bind(asyncio.get_running_loop())
        if ctl.relay is not None:
            ctl.relay.start()
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(run_engine(ctl, config.tick_interval, stop)),
            asyncio.create_task(_fetch_loop(ctl, config.fetch_interval, stop)),
        ]
        try:
            yield
        finally:
            stop.set()
            await asyncio.to_thread(ctl.wakeups.close)
            hub.close_all()
            await asyncio.gather(*tasks, return_exceptions=True)
            if ctl.relay is not None:
                await asyncio.to_thread(ctl.relay.stop)
            for channel in ctl.channels:
                await asyncio.to_thread(channel.close)
            for pump in alert_pumps:
                await asyncio.to_thread(pump.close)
            await asyncio.to_thread(writes.close)

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 500)
        return error(code, getattr(exc, "detail", "") or "not found")

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found}
    )
    app.add_middleware(Timing, latencies=latencies, routes=routes)
    return app, ctl


def openapi_route(routes: list[Route]) -> Route:
    """``GET /v1/openapi.json``: the document of the API routes (not the
    dashboard's pages), this one included, made once."""
    api = [r for r in routes if r.path.startswith("/v1/") or r.path == "/metrics"]
    listed = [(r.path, r.methods or set()) for r in api] + [("/v1/openapi.json", {"GET"})]
    doc = document(listed)

    async def openapi(request: Request) -> Response:
        return JSONResponse(doc)

    return Route("/v1/openapi.json", openapi, methods=["GET"])


async def _fetch_loop(ctl: Control, interval: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
            return
        except TimeoutError:
            pass
        try:
            await asyncio.to_thread(fetch_repo, ctl)
        except FetchError as exc:
            log.warning("fetching the fleet repo failed: %s", exc)


FD_RESERVE = 1024
"""File descriptors kept for everything but event streams: status reports
and polls in flight, database connections, the repo mirror's git, logs."""


def raise_fd_limit() -> int:
    """Raise this process's file-descriptor limit to what it may (the hard
    limit: systemd's default soft limit of 1,024 would cap a server at a few
    hundred event streams), and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file-descriptor limit to %d: %s", hard, exc)
    return hard if soft == resource.RLIM_INFINITY else soft


def stream_room() -> int:
    """Event streams that fit under the current file-descriptor limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 0
    return max(soft - FD_RESERVE, soft // 2)


def serve(config: ServerConfig, host: str, port: int, pm: PluginManager | None = None) -> None:
    import uvicorn

    limit = raise_fd_limit()
    log.info("file-descriptor limit %d: at most %d event streams", limit, stream_room())

    app, _ = build(config, pm)
    # Everything built so far lives as long as the server process: keep it
    # out of the collector's full passes, which otherwise scan it all and
    # stall requests for tens of milliseconds (the p99 of status reports).
    gc.freeze()
    # Event streams never end by themselves: give them a few seconds at shutdown.
    uvicorn.run(
        app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=5
    )
