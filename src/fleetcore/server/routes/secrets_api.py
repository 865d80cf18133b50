"""The secrets API: a device reads its role's secrets and its own;
operators list the names and admins set, rotate and unset them (see
:mod:`fleetcore.server.secrets`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleetcore.server import bodies as b
from fleetcore.server.routes import Api, call, guarded
from fleetcore.server.secrets import RoleSecrets, SecretRequest


def secret_routes(api: Api, secrets: RoleSecrets) -> list[Route]:
    @guarded
    async def device_secrets(request: Request) -> Response:
        who = await api.caller(request)
        values = await call(secrets.for_device, who, request.path_params["device_id"])
        return JSONResponse({"values": values}, headers={"Cache-Control": "no-store"})

    @guarded
    async def role_secrets(request: Request) -> Response:
        role = request.path_params["role"]
        return JSONResponse(
            {"role": role, "secrets": await call(secrets.names, await api.operator(request), role)}
        )

    @guarded
    async def role_secret(request: Request) -> Response:
        op = await api.operator(request, "admin")
        role, name = request.path_params["role"], request.path_params["name"]
        if request.method == "DELETE":
            req = await api.body_or_empty(request, b.ActionRequest)
            await call(secrets.unset, op, role, name, req.reason)
            return Response(status_code=204)
        sreq = await api.body(request, SecretRequest)
        return JSONResponse(await call(secrets.set, op, role, name, sreq))

    @guarded
    async def own_secrets(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        names = await call(secrets.names, await api.operator(request), device_id, "device")
        return JSONResponse({"device_id": device_id, "secrets": names})

    @guarded
    async def own_secret(request: Request) -> Response:
        op = await api.operator(request, "admin")
        device_id, name = request.path_params["device_id"], request.path_params["name"]
        if request.method == "DELETE":
            req = await api.body_or_empty(request, b.ActionRequest)
            await call(secrets.unset, op, device_id, name, req.reason, "device")
            return Response(status_code=204)
        sreq = await api.body(request, SecretRequest)
        return JSONResponse(await call(secrets.set, op, device_id, name, sreq, "device"))

    return [
        Route("/v1/devices/{device_id}/secrets", device_secrets, methods=["GET"]),
        Route("/v1/device-secrets/{device_id}", own_secrets, methods=["GET"]),
        Route("/v1/device-secrets/{device_id}/{name}", own_secret, methods=["PUT", "DELETE"]),
        Route("/v1/secrets/{role}", role_secrets, methods=["GET"]),
        Route("/v1/secrets/{role}/{name}", role_secret, methods=["PUT", "DELETE"]),
    ]
