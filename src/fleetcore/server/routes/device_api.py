"""The device API: enrollment, the desired-state poll, status and history
reports, the event stream, and the role archives and manifests devices
download."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from fleetcore.server import bodies as b
from fleetcore.server.auth import Caller, DeviceCaller
from fleetcore.server.devices import HISTORY, STATUS
from fleetcore.server.groupcommit import GroupCommit
from fleetcore.server.mirror import COMMIT_RE, Mirror
from fleetcore.server.routes import Api, call, guarded, read_json

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies must pass events on at once
]


def device_routes(api: Api, writes: GroupCommit) -> list[Route]:
    ctl = api.ctl
    mirror = ctl.mirror

    @guarded
    async def enroll(request: Request) -> Response:
        req = await api.body(request, b.EnrollRequest)
        return JSONResponse(await call(ctl.enroll, req), status_code=201)

    @guarded
    async def desired(request: Request) -> Response:
        fast = ctl.not_modified(
            request.headers.get("authorization"),
            request.path_params["device_id"],
            request.headers.get("if-none-match"),
        )
        # The server's time on every answer, 304s included: a device that
        # keeps being handed an old one is being replayed the past.
        issued = {"X-Fleetcore-Issued-At": ctl.now().isoformat()}
        if fast is not None:
            return Response(status_code=304, headers={"ETag": fast, **issued})
        # Otherwise a poll that hits the ETag costs the credential lookup and one row.
        etag, data = await call(
            ctl.poll_desired,
            request.headers.get("authorization"),
            request.path_params["device_id"],
            request.headers.get("if-none-match"),
        )
        if data is None:
            return Response(status_code=304, headers={"ETag": etag, **issued})
        return JSONResponse(data, headers={"ETag": etag, "Cache-Control": "no-cache", **issued})

    @guarded
    async def status(request: Request) -> Response:
        raw = await read_json(request, api.limit)
        header = request.headers.get("authorization")
        await writes.submit(STATUS, header, request.path_params["device_id"], raw)
        return Response(status_code=204)

    @guarded
    async def add_history(request: Request) -> Response:
        raw = await read_json(request, api.limit)
        header = request.headers.get("authorization")
        await writes.submit(HISTORY, header, request.path_params["device_id"], raw)
        return Response(status_code=204)

    @guarded
    async def upload_logs(request: Request) -> Response:
        device_id = request.path_params["device_id"]
        who = await api.caller(request)
        await call(ctl.device_access, who, device_id, True)
        req = await api.body(request, b.LogUpload)
        await call(ctl.store_logs, device_id, req)
        return Response(status_code=204)

    open_stream = Response(status_code=200)  # a marker: the checks passed

    @guarded
    async def may_listen(request: Request) -> Response:
        who = await api.caller(request)
        await call(ctl.device_access, who, request.path_params["device_id"])
        return open_stream

    class Events:
        """The event stream, as a plain ASGI endpoint rather than a
        StreamingResponse (whose task group and tasks, times thousands of
        idle streams, make every full garbage collection pass long). Its
        checks go through ``guarded`` like every other endpoint's."""

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            refusal = await may_listen(Request(scope))
            if refusal is open_stream and not ctl.hub.has_room():
                # Better a device that polls than a server out of sockets:
                # it keeps its scheduled polls and tries the stream again later.
                refusal = JSONResponse(
                    {"error": f"this server holds its most event streams "
                              f"({ctl.hub.max_streams}); poll, and try again later"},
                    status_code=503,
                    headers={"Retry-After": "60"},
                )  # fmt: skip
            if refusal is not open_stream:
                await refusal(scope, receive, send)
                return
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await ctl.hub.serve(scope["path_params"]["device_id"], receive, send)

    def commit_role(request: Request) -> tuple[str, str]:
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

    def member(who: Caller) -> None:
        # A device pending acceptance gets no role content.
        if isinstance(who, DeviceCaller):
            who.require_accepted()

    @guarded
    async def archive(request: Request) -> Response:
        member(await api.caller(request))
        commit, role = await call(commit_role, request)
        path = await call(mirror.archive, commit, role)
        return file_response(
            request, path, Mirror.etag("archive", commit, role), "application/x-tar"
        )

    @guarded
    async def manifest(request: Request) -> Response:
        member(await api.caller(request))
        commit, role = await call(commit_role, request)
        data = (await call(mirror.manifest, commit, role)).to_json()
        etag = Mirror.etag("manifest", commit, role)
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(data, headers={"ETag": etag})

    @guarded
    async def relation(request: Request) -> Response:
        # Rollback protection for devices without git: how their next commit
        # relates to the one they run, from the mirror's full history.
        member(await api.caller(request))
        old, new = request.path_params["old"], request.path_params["new"]
        for name, commit in (("old", old), ("new", new)):
            if not COMMIT_RE.match(commit):
                raise b.ApiError(400, f"not a full commit id: {commit!r}", name)
            if await call(mirror.resolve, commit) != commit:
                raise b.ApiError(404, f"unknown commit {commit}", name)
        return JSONResponse({"relation": await call(mirror.relation, old, new)})

    @guarded
    async def proof(request: Request) -> Response:
        member(await api.caller(request))
        commit, role = await call(commit_role, request)
        data = await call(mirror.proof, commit, role)
        return JSONResponse(data, headers={"Cache-Control": "private, max-age=86400"})

    return [
        Route("/v1/enroll", enroll, methods=["POST"]),
        Route("/v1/proofs/{commit}/{role}", proof, methods=["GET"]),
        Route("/v1/relation/{old}/{new}", relation, methods=["GET"]),
        Route("/v1/devices/{device_id}/desired", desired, methods=["GET"]),
        Route("/v1/devices/{device_id}/status", status, methods=["POST"]),
        Route("/v1/devices/{device_id}/history", add_history, methods=["POST"]),
        Route("/v1/devices/{device_id}/logs", upload_logs, methods=["POST"]),
        Route("/v1/devices/{device_id}/events", Events(), methods=["GET"]),
        Route("/v1/archives/{commit}/{role}", archive, methods=["GET"]),
        Route("/v1/manifests/{commit}/{role}", manifest, methods=["GET"]),
    ]


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
