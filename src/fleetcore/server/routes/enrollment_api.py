"""Enrollment beyond the first request: scoped enrollment tokens, a device
rotating its own credential, and admins accepting pending devices or
allowing one re-enrollment of an id (see :mod:`fleetcore.server.enrollment`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleetcore.server import bodies as b
from fleetcore.server.routes import Api, call, guarded


def enrollment_routes(api: Api) -> list[Route]:
    ctl = api.ctl

    @guarded
    async def enrollment_token(request: Request) -> Response:
        op = await api.operator(request, "admin")
        req = await api.body(request, b.EnrollmentTokenRequest)
        return JSONResponse(await call(ctl.create_enrollment_token, op, req), status_code=201)

    @guarded
    async def rotate(request: Request) -> Response:
        who = await api.caller(request)
        data = await call(ctl.rotate_credential, who, request.path_params["device_id"])
        return JSONResponse(data, headers={"Cache-Control": "no-store"})

    @guarded
    async def allow_reenroll(request: Request) -> Response:
        op = await api.operator(request, "admin")
        req = await api.body(request, b.ReenrollRequest)
        return JSONResponse(
            await call(ctl.allow_reenroll, op, request.path_params["device_id"], req)
        )

    @guarded
    async def accept(request: Request) -> Response:
        op = await api.operator(request, "admin")
        req = await api.body_or_empty(request, b.ActionRequest)
        return JSONResponse(
            await call(ctl.accept_device, op, request.path_params["device_id"], req)
        )

    return [
        Route("/v1/enrollment-tokens", enrollment_token, methods=["POST"]),
        Route("/v1/devices/{device_id}/credential", rotate, methods=["POST"]),
        Route("/v1/devices/{device_id}/allow-reenroll", allow_reenroll, methods=["POST"]),
        Route("/v1/devices/{device_id}/accept", accept, methods=["POST"]),
    ]
