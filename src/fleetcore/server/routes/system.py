"""The server's own endpoints: health, metrics, and a bare one for benchmarks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from fleetcore.server.metrics import Latencies, render
from fleetcore.server.routes import call, guarded
from fleetcore.server.service import Control


def system_routes(ctl: Control, latencies: Latencies) -> list[Route]:
    @guarded
    async def metrics(request: Request) -> Response:
        body, content_type = await call(render, ctl, latencies, request.headers.get("accept"))
        return PlainTextResponse(body, media_type=content_type)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def bare(request: Request) -> Response:
        # For benchmarks: the cost of the HTTP stack alone.
        return Response(status_code=204)

    return [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/bare", bare, methods=["POST", "GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
