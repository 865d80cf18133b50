"""Blast-radius protection over HTTP: incidents, the thresholds, and the
fleet-wide HALT ALL / RESUME NORMAL."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleetcore.server import bodies as b
from fleetcore.server.routes import Api, call, guarded, numeric


def incident_routes(api: Api) -> list[Route]:
    ctl = api.ctl

    @guarded
    async def incidents(request: Request) -> Response:
        await api.operator(request)
        return JSONResponse({"incidents": await call(ctl.incidents)})

    @guarded
    async def incident(request: Request) -> Response:
        await api.operator(request)
        return JSONResponse(await call(ctl.incident, numeric(request, "incident_id", "incident")))

    @guarded
    async def blast_radius(request: Request) -> Response:
        if request.method == "GET":
            await api.operator(request)
            return JSONResponse(await call(ctl.blast_radius))
        op = await api.operator(request, "admin")
        req = await api.body(request, b.BlastRadiusRequest)
        return JSONResponse(await call(ctl.set_blast_radius, op, req))

    @guarded
    async def halt_all(request: Request) -> Response:
        op = await api.operator(request, "admin")
        req = await api.body(request, b.HaltRequest)
        return JSONResponse(await call(ctl.halt_all, op, req))

    @guarded
    async def resume_all(request: Request) -> Response:
        op = await api.operator(request, "admin")
        req = await api.body_or_empty(request, b.ActionRequest)
        return JSONResponse(await call(ctl.resume_all, op, req))

    return [
        Route("/v1/incidents", incidents, methods=["GET"]),
        Route("/v1/incidents/{incident_id}", incident, methods=["GET"]),
        Route("/v1/fleet/blast-radius", blast_radius, methods=["GET", "PUT"]),
        Route("/v1/fleet/halt-all", halt_all, methods=["POST"]),
        Route("/v1/fleet/resume-all", resume_all, methods=["POST"]),
    ]
