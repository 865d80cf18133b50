"""The dashboard: Jinja2 pages over the same service the API uses.

Login is an operator token kept in an HttpOnly, SameSite=Strict cookie;
the buttons are plain forms (no JavaScript needed), and what a viewer may
not do is neither shown nor accepted. A form is turned into the API's own
request body and handed to the same :class:`Control` method, so it is
checked and audit-logged the same way; the dashboard asks in addition for a
reason on every admin change (the API leaves it optional for scripts).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from fleetcore.config.units import Duration
from fleetcore.server import bodies as b
from fleetcore.server import dashboard as view
from fleetcore.server.auth import Operator
from fleetcore.server.rollouts import ACTIONS

if TYPE_CHECKING:
    from fleetcore.server.service import Control

COOKIE = "fleetcore_token"
env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def _short(commit: str | None) -> str:
    return (commit or "none")[:12]


env.filters["short"] = _short
env.filters["ago"] = view.ago
env.filters["absolute"] = view.absolute
env.filters["uptime"] = view.uptime
env.filters["duration"] = view.duration
env.filters["rate"] = view.rate
env.filters["step_options"] = view.step_options
STATIC = Path(__file__).parent / "static"


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form, parsed here: starlette's parser would need
    python-multipart for two fields."""
    from urllib.parse import parse_qs

    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > 16384:
            break
    fields = parse_qs(raw[:16384].decode("utf-8", "replace"))
    return {k: v[0] for k, v in fields.items()}


def _required_reason(form: dict[str, str]) -> str:
    reason = form.get("reason", "").strip()
    if not reason:
        raise b.ApiError(400, "A reason is required: say why (it goes to the audit log).", "reason")
    return reason


def _when(value: str | None, now: dt.datetime) -> str | None:
    """A form's expiry: empty, a duration from now ('4h', '2d') or a date,
    which the request body's own converter then checks."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return (now + dt.timedelta(seconds=Duration.parse(value).seconds)).isoformat()
    except ValueError:
        return value


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)} seconds"
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{minutes // 60} hours {minutes % 60} minutes"


def _emergency(status: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The overview's blast-radius panel: the open incident, how long the
    fleet has been halted, and how many devices are healthy meanwhile."""
    incident = (status.get("blast_radius") or {}).get("incident")
    since = None
    if incident:
        opened = dt.datetime.fromisoformat(incident["opened_at"])
        since = _ago(max(0.0, (now - opened).total_seconds()))
    return {
        "incident": incident,
        "since": since,
        "healthy": status["by_status"].get("healthy", 0),
    }


def page_routes(ctl: Control, refresh: float = 10.0) -> list[Route]:
    """The dashboard's pages; an open page asks for itself again every
    ``refresh`` seconds (each time the overview is a pass over the fleet)."""
    refresh_ms = round(refresh * 1000)

    def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        # Every page shows times relative to the server's clock.
        html = env.get_template(name).render(now=ctl.now(), refresh_ms=refresh_ms, **context)
        return HTMLResponse(html, status_code=status)

    async def who(request: Request) -> Operator | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        try:
            caller = await run_in_threadpool(ctl.caller_for, token)
        except b.ApiError:
            return None
        return caller if isinstance(caller, Operator) else None

    def to_login() -> Response:
        return RedirectResponse("/login", status_code=303)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return render("login.html", op=None, error=None)
        form = await _form(request)
        token = str(form.get("token", "")).strip()
        try:
            caller = await run_in_threadpool(ctl.caller_for, token)
        except b.ApiError:
            caller = None
        if not isinstance(caller, Operator):
            return render("login.html", status=401, op=None, error="That token is not valid.")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=12 * 3600)
        return response

    async def logout(request: Request) -> Response:
        response = to_login()
        response.delete_cookie(COOKIE)
        return response

    async def overview(request: Request) -> Response:
        op = await who(request)
        if op is None:
            return to_login()
        status = await run_in_threadpool(ctl.fleet_status)
        devices = await run_in_threadpool(ctl.devices)
        rollouts = await run_in_threadpool(ctl.rollouts, 20)
        query = {
            k: request.query_params.get(k, "") for k in ("q", "role", "segment", "status", "label")
        }
        found = view.filter_devices(devices, query)
        return render(
            "overview.html",
            op=op,
            s=status,
            em=_emergency(status, ctl.now()),
            summary=view.summary(status),
            page=view.page_of(found, request.query_params.get("page")),
            query=query,
            args=urlencode({k: v for k, v in query.items() if v}),
            filtered=any(query.values()),
            roles=sorted({d["role"] for d in devices}),
            segments=sorted({d["segment"] for d in devices}),
            statuses=view.STATUSES,
            active=[r for r in rollouts if r["state"] in ("running", "halted")],
            rollouts=rollouts,
            is_admin=op.role == "admin",
        )

    async def incident(request: Request) -> Response:
        op = await who(request)
        if op is None:
            return to_login()
        raw = request.path_params["incident_id"]
        try:
            if not raw.isdigit():
                raise b.ApiError(404, f"unknown incident {raw!r}")
            data = await run_in_threadpool(ctl.incident, int(raw))
        except b.ApiError as exc:
            return render("error.html", status=exc.status, op=op, message=exc.message)
        return render("incident.html", op=op, i=data)

    async def device(request: Request) -> Response:
        op = await who(request)
        if op is None:
            return to_login()
        try:
            data = await run_in_threadpool(ctl.device, request.path_params["device_id"])
        except b.ApiError as exc:
            return render("error.html", status=exc.status, op=op, message=exc.message)
        return render(
            "device.html",
            op=op,
            d=data,
            lines=view.sparklines(ctl.samples, data["device_id"], ctl.now()),
            is_admin=op.role == "admin",
            can_resume=op.role in ("operator", "admin"),
        )

    async def device_logs(request: Request) -> Response:
        op = await who(request)
        if op is None:
            return to_login()
        device_id = request.path_params["device_id"]
        if request.method == "POST":
            try:
                await run_in_threadpool(ctl.request_logs, op, device_id)
            except b.ApiError as exc:
                return render("error.html", status=exc.status, op=op, message=exc.message)
            return RedirectResponse(f"/devices/{quote(device_id)}/logs?asked=1", status_code=303)
        try:
            logs = await run_in_threadpool(ctl.device_logs, device_id)
        except b.ApiError as exc:
            return render("error.html", status=exc.status, op=op, message=exc.message)
        return render(
            "device_logs.html",
            op=op,
            device_id=device_id,
            logs=logs,
            asked=bool(request.query_params.get("asked")),
            can_ask=op.role in ("operator", "admin"),
        )

    async def rollout(request: Request) -> Response:
        op = await who(request)
        if op is None:
            return to_login()
        raw = request.path_params["rollout_id"]
        try:
            if not raw.isdigit():
                raise b.ApiError(404, f"unknown rollout {raw!r}")
            data = await run_in_threadpool(ctl.rollout, int(raw))
        except b.ApiError as exc:
            return render("error.html", status=exc.status, op=op, message=exc.message)
        can_act = op.role in ("operator", "admin")
        return render("rollout.html", op=op, r=data, can_act=can_act, message=None)

    async def rollout_action(request: Request) -> Response:
        op = await who(request)
        if op is None:
            return to_login()
        raw, action = request.path_params["rollout_id"], request.path_params["action"]
        form = await _form(request)
        try:
            if not raw.isdigit() or action not in ACTIONS:
                raise b.ApiError(404, "unknown rollout or action")
            await run_in_threadpool(
                ctl.rollout_action, op, int(raw), action, str(form.get("reason", ""))
            )
        except b.ApiError as exc:
            return render("error.html", status=exc.status, op=op, message=exc.message)
        return RedirectResponse(f"/rollouts/{raw}", status_code=303)

    def policy_action(
        role: str, work: Callable[[Operator, dict[str, str], dict[str, str]], None]
    ) -> Callable[[Request], Any]:
        """A form that changes policy: a viewer (or an operator, for admin
        changes) is refused before anything is read; any refusal is a page
        saying why, and nothing changes; success goes back to the page."""

        async def endpoint(request: Request) -> Response:
            op = await who(request)
            if op is None:
                return to_login()
            params = dict(request.path_params)
            back = f"/devices/{quote(params['device_id'])}" if "device_id" in params else "/"
            form = await _form(request)
            try:
                op.require(role)
                await run_in_threadpool(work, op, params, form)
            except b.ApiError as exc:
                return render(
                    "error.html", status=exc.status, op=op, message=exc.message, back=back
                )
            return RedirectResponse(back, status_code=303)

        return endpoint

    def pin(op: Operator, _params: dict[str, str], form: dict[str, str]) -> None:
        body = {
            "commit": form.get("commit", ""),
            "reason": _required_reason(form),
            "expires": _when(form.get("expires"), ctl.now()),
        }
        ctl.pin(op, b.parse(body, b.PinRequest))

    def unpin(op: Operator, _params: dict[str, str], form: dict[str, str]) -> None:
        ctl.unpin(op, b.ActionRequest(reason=_required_reason(form)))

    def lock(op: Operator, params: dict[str, str], form: dict[str, str]) -> None:
        body = {
            "commit": form.get("commit", ""),
            "reason": _required_reason(form),
            "until": _when(form.get("until"), ctl.now()),
        }
        ctl.lock(op, params["device_id"], b.parse(body, b.LockRequest))

    def unlock(op: Operator, params: dict[str, str], form: dict[str, str]) -> None:
        ctl.unlock(op, params["device_id"], b.ActionRequest(reason=_required_reason(form)))

    def resume(op: Operator, params: dict[str, str], form: dict[str, str]) -> None:
        reason = form.get("reason", "").strip()
        ctl.resume(op, params["device_id"], b.ActionRequest(reason=reason))

    def halt_all(op: Operator, _params: dict[str, str], form: dict[str, str]) -> None:
        ctl.halt_all(op, b.HaltRequest(reason=_required_reason(form)))

    def rollback(op: Operator, _params: dict[str, str], form: dict[str, str]) -> None:
        ctl.halt_all(op, b.HaltRequest(reason=_required_reason(form), rollback=True))

    def resume_all(op: Operator, _params: dict[str, str], form: dict[str, str]) -> None:
        ctl.resume_all(op, b.ActionRequest(reason=_required_reason(form)))

    def wake(op: Operator, params: dict[str, str], form: dict[str, str]) -> None:
        reason = form.get("reason", "").strip() or "force update from the dashboard"
        ctl.wake(op, params["device_id"], b.ActionRequest(reason=reason))

    def check_now(op: Operator, params: dict[str, str], form: dict[str, str]) -> None:
        reason = form.get("reason", "").strip() or "check now from the dashboard"
        ctl.check_now(op, params["device_id"], b.ActionRequest(reason=reason))

    def safe_mode(op: Operator, params: dict[str, str], form: dict[str, str]) -> None:
        ctl.enter_safe_mode(op, params["device_id"], b.ActionRequest(reason=_required_reason(form)))

    async def static(request: Request) -> Response:
        # The dashboard's few files, served by the server itself: the
        # devices' networks often have no way to a CDN.
        name = request.path_params["name"]
        path = STATIC / name
        if "/" in name or not path.is_file():
            return Response("not found", status_code=404)
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response(
            path.read_bytes(),
            media_type=kind,
            headers={"Cache-Control": "max-age=300"},
        )

    return [
        Route("/", overview, methods=["GET"]),
        Route("/fleet/halt-all", policy_action("admin", halt_all), methods=["POST"]),
        Route("/fleet/rollback", policy_action("admin", rollback), methods=["POST"]),
        Route("/fleet/resume-all", policy_action("admin", resume_all), methods=["POST"]),
        Route("/incidents/{incident_id}", incident, methods=["GET"]),
        Route("/fleet/pin", policy_action("admin", pin), methods=["POST"]),
        Route("/fleet/unpin", policy_action("admin", unpin), methods=["POST"]),
        Route("/devices/{device_id}/lock", policy_action("admin", lock), methods=["POST"]),
        Route("/devices/{device_id}/unlock", policy_action("admin", unlock), methods=["POST"]),
        Route("/devices/{device_id}/resume", policy_action("operator", resume), methods=["POST"]),
        Route("/devices/{device_id}/wake", policy_action("operator", wake), methods=["POST"]),
        Route("/devices/{device_id}/check", policy_action("operator", check_now), methods=["POST"]),
        Route(
            "/devices/{device_id}/safe-mode", policy_action("operator", safe_mode), methods=["POST"]
        ),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST", "GET"]),
        Route("/devices/{device_id}", device, methods=["GET"]),
        Route("/devices/{device_id}/logs", device_logs, methods=["GET", "POST"]),
        Route("/rollouts/{rollout_id}", rollout, methods=["GET"]),
        Route("/rollouts/{rollout_id}/{action}", rollout_action, methods=["POST"]),
    ]
