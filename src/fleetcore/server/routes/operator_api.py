"""The operator API: reads (fleet status, devices, rollouts, the audit log),
fleet policy, rollouts, tokens and device revocation, and the git push hook."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleetcore.server import bodies as b
from fleetcore.server.branches import fetch_repo
from fleetcore.server.rollouts import ACTIONS
from fleetcore.server.routes import Api, call, guarded, numeric
from fleetcore.server.views import label_filter


def operator_routes(api: Api) -> list[Route]:
    ctl = api.ctl

    # -- reads --

    @guarded
    async def fleet_status(request: Request) -> Response:
        await api.operator(request)
        return JSONResponse(await call(ctl.fleet_status))

    @guarded
    async def list_devices(request: Request) -> Response:
        await api.operator(request)
        labels = label_filter(request.query_params.getlist("label"))
        return JSONResponse({"devices": await call(ctl.devices, labels)})

    @guarded
    async def get_device(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        who = await api.caller(request)
        await call(ctl.device_access, who, device_id)
        return JSONResponse(await call(ctl.device, device_id))

    @guarded
    async def audit(request: Request) -> Response:
        await api.operator(request)
        raw = request.query_params.get("limit", "100")
        if not raw.isdigit():
            raise b.ApiError(400, f"limit must be a whole number, got {raw!r}", "limit")
        return JSONResponse({"audit": await call(ctl.audit_log, min(int(raw), 1000))})

    # -- rollouts --

    @guarded
    async def rollouts(request: Request) -> Response:
        if request.method == "GET":
            await api.operator(request)
            return JSONResponse({"rollouts": await call(ctl.rollouts)})
        op = await api.operator(request, "operator")
        req = await api.body(request, b.RolloutRequest)
        return JSONResponse(await call(ctl.start_rollout, op, req), status_code=201)

    @guarded
    async def rollout(request: Request) -> Response:
        await api.operator(request)
        return JSONResponse(await call(ctl.rollout, numeric(request, "rollout_id", "rollout")))

    @guarded
    async def rollout_action(request: Request) -> Response:
        op = await api.operator(request, "operator")
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise b.ApiError(404, f"unknown rollout action {action!r}", "action")
        req = await api.body_or_empty(request, b.ActionRequest)
        rollout_id = numeric(request, "rollout_id", "rollout")
        return JSONResponse(await call(ctl.rollout_action, op, rollout_id, action, req.reason))

    # -- fleet policy --

    @guarded
    async def pin(request: Request) -> Response:
        op = await api.operator(request, "admin")
        if request.method == "DELETE":
            req = await api.body_or_empty(request, b.ActionRequest)
            await call(ctl.unpin, op, req)
            return Response(status_code=204)
        preq = await api.body(request, b.PinRequest)
        return JSONResponse(await call(ctl.pin, op, preq))

    @guarded
    async def window(request: Request) -> Response:
        op = await api.operator(request, "admin")
        req = await api.body(request, b.WindowRequest)
        return JSONResponse({"maintenance_window": await call(ctl.set_window, op, req)})

    @guarded
    async def lock(request: Request) -> Response:
        op = await api.operator(request, "admin")
        device_id = request.path_params["device_id"]
        if request.method == "DELETE":
            req = await api.body_or_empty(request, b.ActionRequest)
            await call(ctl.unlock, op, device_id, req)
        else:
            lreq = await api.body(request, b.LockRequest)
            await call(ctl.lock, op, device_id, lreq)
        return JSONResponse(await call(ctl.device, device_id))

    @guarded
    async def override(request: Request) -> Response:
        op = await api.operator(request, "admin")
        device_id = request.path_params["device_id"]
        req = await api.body(request, b.OverrideRequest)
        await call(ctl.override, op, device_id, req)
        return JSONResponse(await call(ctl.device, device_id))

    @guarded
    async def resume(request: Request) -> Response:
        op = await api.operator(request, "operator")
        req = await api.body_or_empty(request, b.ActionRequest)
        count = await call(ctl.resume, op, request.path_params["device_id"], req)
        return JSONResponse({"device_id": request.path_params["device_id"], "resume": count})

    @guarded
    async def wake(request: Request) -> Response:
        op = await api.operator(request, "operator")
        req = await api.body_or_empty(request, b.ActionRequest)
        device_id = request.path_params["device_id"]
        await call(ctl.wake, op, device_id, req)
        return JSONResponse({"device_id": device_id, "woken": True})

    @guarded
    async def check_now(request: Request) -> Response:
        op = await api.operator(request, "operator")
        req = await api.body_or_empty(request, b.ActionRequest)
        device_id = request.path_params["device_id"]
        await call(ctl.check_now, op, device_id, req)
        return JSONResponse({"device_id": device_id, "asked": True})

    @guarded
    async def request_logs(request: Request) -> Response:
        op = await api.operator(request, "operator")
        device_id = request.path_params["device_id"]
        await call(ctl.request_logs, op, device_id)
        return JSONResponse({"device_id": device_id, "asked": True})

    @guarded
    async def device_logs(request: Request) -> Response:
        await api.operator(request, "viewer")
        device_id = request.path_params["device_id"]
        return JSONResponse(
            {"device_id": device_id, "logs": await call(ctl.device_logs, device_id)}
        )

    @guarded
    async def safe_mode(request: Request) -> Response:
        op = await api.operator(request, "operator")
        req = await api.body_or_empty(request, b.ActionRequest)
        device_id = request.path_params["device_id"]
        count = await call(ctl.enter_safe_mode, op, device_id, req)
        return JSONResponse({"device_id": device_id, "safe_mode": count})

    # -- credentials --

    @guarded
    async def tokens(request: Request) -> Response:
        op = await api.operator(request, "admin")
        if request.method == "GET":
            return JSONResponse({"tokens": await call(ctl.tokens, op)})
        req = await api.body(request, b.TokenRequest)
        return JSONResponse(await call(ctl.create_token, op, req), status_code=201)

    @guarded
    async def revoke_token(request: Request) -> Response:
        op = await api.operator(request, "admin")
        token_id = numeric(request, "token_id", "token")
        req = await api.body_or_empty(request, b.ActionRequest)
        return JSONResponse(await call(ctl.revoke_token, op, token_id, req))

    @guarded
    async def revoke_device(request: Request) -> Response:
        op = await api.operator(request, "admin")
        device_id = request.path_params["device_id"]
        req = await api.body_or_empty(request, b.ActionRequest)
        await call(ctl.revoke_device, op, device_id, req)
        return JSONResponse(await call(ctl.device, device_id))

    @guarded
    async def git_hook(request: Request) -> Response:
        # Git servers' push hooks often cannot send headers: ?token= works too.
        header = request.headers.get("authorization")
        if header is None and "token" in request.query_params:
            header = f"Bearer {request.query_params['token']}"
        ctl.operator(await call(ctl.authenticate, header), "operator")
        return JSONResponse({"branches": await call(fetch_repo, ctl)})

    return [
        Route("/v1/devices/{device_id}/lock", lock, methods=["PUT", "DELETE"]),
        Route("/v1/devices/{device_id}/override", override, methods=["PUT"]),
        Route("/v1/devices/{device_id}", get_device, methods=["GET"]),
        Route("/v1/devices", list_devices, methods=["GET"]),
        Route("/v1/fleet/status", fleet_status, methods=["GET"]),
        Route("/v1/fleet/pin", pin, methods=["PUT", "DELETE"]),
        Route("/v1/fleet/maintenance-window", window, methods=["PUT"]),
        Route("/v1/rollouts", rollouts, methods=["GET", "POST"]),
        Route("/v1/rollouts/{rollout_id}", rollout, methods=["GET"]),
        Route("/v1/rollouts/{rollout_id}/{action}", rollout_action, methods=["POST"]),
        Route("/v1/audit", audit, methods=["GET"]),
        Route("/v1/devices/{device_id}/resume", resume, methods=["POST"]),
        Route("/v1/devices/{device_id}/wake", wake, methods=["POST"]),
        Route("/v1/devices/{device_id}/check", check_now, methods=["POST"]),
        Route("/v1/devices/{device_id}/logs", device_logs, methods=["GET"]),
        Route("/v1/devices/{device_id}/logs/request", request_logs, methods=["POST"]),
        Route("/v1/devices/{device_id}/safe-mode", safe_mode, methods=["POST"]),
        Route("/v1/devices/{device_id}/revoke", revoke_device, methods=["POST"]),
        Route("/v1/tokens", tokens, methods=["GET", "POST"]),
        Route("/v1/tokens/{token_id}", revoke_token, methods=["DELETE"]),
        Route("/v1/hooks/git", git_hook, methods=["POST"]),
    ]
