"""Archives and manifests, the git hook, SSE events and bad input."""

from __future__ import annotations

import io
import json
import queue
import tarfile
import threading
import time
from typing import Any

import requests

from fleetcore.release import Manifest
from fleetcore.server.events import Event


def test_archive_resumes_with_range_and_manifest_matches_tree(server: Any, repo: Any) -> None:
    cred = server.enroll("pi-1", "web")
    head = repo.git("rev-parse", "HEAD")
    path = f"/v1/archives/{head}/web"
    assert server.request("GET", path).status_code == 401

    full = server.request("GET", path, cred)
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    etag = full.headers["etag"]
    with tarfile.open(fileobj=io.BytesIO(full.content)) as tar:
        names = tar.getnames()
    assert "roles/web/activate.sh" in names and not any(n.startswith("roles/cam") for n in names)

    # An interrupted download resumes where it stopped.
    part = server.request("GET", path, cred, headers={"Range": "bytes=1000-", "If-Range": etag})
    assert part.status_code == 206
    assert (
        part.headers["content-range"] == f"bytes 1000-{len(full.content) - 1}/{len(full.content)}"
    )
    assert full.content[:1000] + part.content == full.content
    assert server.request("GET", path, cred, headers={"If-None-Match": etag}).status_code == 304
    bad = server.request("GET", path, cred, headers={"Range": f"bytes={len(full.content)}-"})
    assert bad.status_code == 416

    m = server.request("GET", f"/v1/manifests/{head}/web", cred)
    assert m.status_code == 200
    manifest = Manifest.from_json(m.json())
    by_path = manifest.by_path()
    blob = repo.git("rev-parse", f"{head}:roles/web/conf/site.conf")
    assert by_path["conf/site.conf"].git_blob == blob
    assert by_path["activate.sh"].mode == 0o755

    r = server.request("GET", f"/v1/archives/{'0' * 40}/web", cred)
    assert r.status_code == 404 and r.json()["field"] == "commit"
    r = server.request("GET", f"/v1/archives/{head}/nope", cred)
    assert r.status_code == 404 and r.json()["field"] == "role"


def test_git_hook_fetches_new_commits(server: Any, repo: Any) -> None:
    operator = server.token("operator")
    new = repo.commit({"roles/web/new.txt": "x"}, "new")
    r = server.request("POST", "/v1/hooks/git", operator)
    assert r.status_code == 200 and r.json()["branches"]["main"] == new
    assert server.request("POST", "/v1/hooks/git", server.token("viewer")).status_code == 403
    newer = repo.commit({"roles/web/new.txt": "y"}, "newer")
    r = server.request("POST", f"/v1/hooks/git?token={operator}")
    assert r.status_code == 200 and r.json()["branches"]["main"] == newer


def _listen(server: Any, device: str, cred: str, out: queue.Queue[Any]) -> requests.Response:
    r = requests.get(
        f"{server.url}/v1/devices/{device}/events",
        headers={"Authorization": f"Bearer {cred}"},
        stream=True,
        timeout=10,
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")

    def read() -> None:
        event = None
        try:
            for line in r.iter_lines(decode_unicode=True):
                if line.startswith(":"):
                    out.put(("comment", line))
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    out.put((event, json.loads(line[6:])))
        except Exception:  # the stream closed at the end of the test
            pass

    threading.Thread(target=read, daemon=True).start()
    return r


def _next_event(out: queue.Queue[Any]) -> tuple[str, Any]:
    while True:
        kind, data = out.get(timeout=10)
        if kind != "comment":
            return kind, data


def test_sse_delivers_promotions_and_policy_changes(server: Any, repo: Any) -> None:
    operator, admin = server.token("operator"), server.token("admin")
    canary = server.enroll("c-1", "web", "canary")
    general = server.enroll("g-1", "web", "general")
    head = repo.git("rev-parse", "HEAD")
    events_c: queue.Queue[Any] = queue.Queue()
    events_g: queue.Queue[Any] = queue.Queue()
    streams = [_listen(server, "c-1", canary, events_c), _listen(server, "g-1", general, events_g)]
    try:
        # Keep-alive comments arrive while nothing happens.
        assert events_c.get(timeout=5)[0] == "comment"
        r = server.request(
            "POST",
            "/v1/rollouts",
            operator,
            json={"commit": head, "strategy": "canary", "role": "web"},
        )
        assert r.status_code == 201
        assert _next_event(events_c) == ("update-available", {"commit": head})
        server.request("POST", f"/v1/rollouts/{r.json()['id']}/promote", operator)
        server.request("POST", f"/v1/rollouts/{r.json()['id']}/promote", operator)
        assert _next_event(events_g) == ("update-available", {"commit": head})
        r = server.request(
            "PUT", "/v1/devices/c-1/lock", admin, json={"commit": head, "reason": "hold"}
        )
        assert r.status_code == 200
        kind, data = _next_event(events_c)
        assert kind == "policy-changed" and data["why"] == "lock"
        # Another device's stream is refused.
        r = requests.get(
            f"{server.url}/v1/devices/c-1/events",
            headers={"Authorization": f"Bearer {general}"},
            timeout=5,
        )
        assert r.status_code == 403
    finally:
        for s in streams:
            s.close()


def test_a_rollout_that_finishes_wakes_no_device_already_given_its_commit(
    server: Any, repo: Any
) -> None:
    # Finishing turns every device's reason from "rollout" into "stable" on
    # the same commit. Waking them all for that made a whole fleet ask for
    # its desired state in the same second.
    operator = server.token("operator")
    cred = server.enroll("g-1", "web", "general")
    head = repo.git("rev-parse", "HEAD")
    events: queue.Queue[Any] = queue.Queue()
    stream = _listen(server, "g-1", cred, events)
    try:
        r = server.request(
            "POST",
            "/v1/rollouts",
            operator,
            json={"commit": head, "strategy": "percentage", "role": "web",
                  "steps": [{"options": {"percent": 100}}]},
        )  # fmt: skip
        assert r.status_code == 201
        assert _next_event(events) == ("update-available", {"commit": head})
        r = server.request("POST", f"/v1/rollouts/{r.json()['id']}/promote", operator)
        assert r.status_code == 200 and r.json()["state"] == "completed"
        assert server.request("GET", "/v1/devices/g-1/desired", cred).json()["why"] == "stable"
        # The next event the device gets is the one an operator asks for.
        assert server.request("POST", "/v1/devices/g-1/wake", operator).status_code == 200
        assert _next_event(events) == ("update-available", {"commit": head, "forced": True})
    finally:
        stream.close()


def test_a_stream_the_client_leaves_is_let_go(server: Any) -> None:
    """A device that goes away (power cut, network change) must not leave
    its stream behind: the server holds thousands and would grow forever."""
    creds = {d: server.enroll(d, "web") for d in ("a-1", "a-2")}
    out: queue.Queue[Any] = queue.Queue()
    streams = [_listen(server, d, c, out) for d, c in creds.items()]
    deadline = time.monotonic() + 10
    while server.ctl.hub.connected != 2:
        assert time.monotonic() < deadline, server.ctl.hub.connected
        time.sleep(0.05)
    streams[0].close()
    while server.ctl.hub.connected != 1:
        assert time.monotonic() < deadline, "the closed stream is still held"
        time.sleep(0.05)
    # The other device still gets its events.
    server.ctl.hub.publish([Event("a-2", "policy-changed", {"why": "test"})])
    assert _next_event(out) == ("policy-changed", {"why": "test"})
    streams[1].close()
    while server.ctl.hub.connected:
        assert time.monotonic() < deadline, "the closed stream is still held"
        time.sleep(0.05)


def test_bad_input_is_refused_and_changes_nothing(server: Any, repo: Any) -> None:
    viewer, operator, admin = (
        server.token("viewer"),
        server.token("operator"),
        server.token("admin"),
    )
    cred = server.enroll("pi-1", "web")
    head = repo.git("rev-parse", "HEAD")

    def audit_count() -> int:
        return len(server.request("GET", "/v1/audit?limit=1000", admin).json()["audit"])

    before = audit_count()
    status = "/v1/devices/pi-1/status"
    cases = [
        # (method, path, token, body, status, field)
        ("POST", status, cred, b"{not json", 400, None),
        ("POST", status, cred, [1, 2], 400, None),
        ("POST", status, cred, {"status": "great"}, 400, "status"),
        ("POST", status, cred, {"status": "healthy", "cpu_percent": "12"}, 400, "cpu_percent"),
        ("POST", status, cred, b'{"status": "healthy", "cpu_percent": NaN}', 400, "cpu_percent"),
        ("POST", status, cred, {"status": "healthy", "colour": "red"}, 400, None),
        ("POST", status, cred, {}, 400, "status"),
        ("POST", status, "fcd_forged", {"status": "healthy"}, 401, None),
        ("POST", "/v1/devices/nobody/status", cred, {"status": "healthy"}, 403, "device_id"),
        ("GET", "/v1/devices/nobody", viewer, None, 404, "device_id"),
        (
            "POST",
            "/v1/devices/pi-1/history",
            cred,
            {"entries": [{"timestamp": "yesterday", "result": "success"}]},
            400,
            "entries[0].timestamp",
        ),
        (
            "POST",
            "/v1/devices/pi-1/history",
            cred,
            {
                "entries": [
                    {"timestamp": "2026-01-01T11:00:00Z", "result": "success", "device_id": "pi-2"}
                ]
            },
            403,
            "entries.0.device_id",
        ),
        ("PUT", "/v1/fleet/pin", viewer, {"commit": head, "reason": "x"}, 403, None),
        ("PUT", "/v1/fleet/pin", admin, {"commit": "f" * 40, "reason": "x"}, 400, "commit"),
        ("POST", "/v1/rollouts", viewer, {"commit": head, "strategy": "canary"}, 403, None),
        ("POST", "/v1/rollouts", operator, {"commit": head, "strategy": "canry"}, 400, "strategy"),
        ("POST", "/v1/rollouts", operator, {"commit": "nope", "strategy": "canary"}, 400, "commit"),
        (
            "POST",
            "/v1/rollouts",
            operator,
            {"commit": head, "strategy": "canary", "role": "db"},
            400,
            "role",
        ),
        (
            "POST",
            "/v1/rollouts",
            operator,
            {"commit": head, "strategy": "percentage", "steps": [{"options": {"percent": 120}}]},
            400,
            "steps.0.options.percent",
        ),
        (
            "POST",
            "/v1/rollouts",
            operator,
            {"commit": head, "strategy": "canary", "threshold": 2},
            400,
            "threshold",
        ),
        ("POST", "/v1/rollouts/999/halt", operator, None, 404, "id"),
        (
            "POST",
            "/v1/enroll",
            None,
            {"enrollment_token": "x", "device_id": "../etc", "role": "web"},
            400,
            "device_id",
        ),
        ("POST", "/v1/tokens", operator, {"role": "admin"}, 403, None),
    ]
    for method, path, token, body, code, field in cases:
        kw: dict[str, Any] = {}
        if isinstance(body, bytes):
            kw["data"] = body
        elif body is not None:
            kw["json"] = body
        r = server.request(method, path, token, **kw)
        assert r.status_code == code, (path, body, r.status_code, r.text)
        payload = r.json()
        assert payload["error"], payload
        if field is not None:
            assert payload["field"] == field, (body, payload)
    big = {"status": "healthy", "current_error": "x" * (2 * 1024 * 1024)}
    r = server.request("POST", status, cred, json=big)
    assert r.status_code == 413 and "larger than" in r.json()["error"]
    d = server.request("GET", "/v1/devices/pi-1", viewer).json()
    assert d["status"] == "unknown" and d["last_seen"] is None
    assert server.request("GET", "/v1/rollouts", viewer).json()["rollouts"] == []
    assert audit_count() == before


def test_events_reach_streams_held_by_another_replica(
    make_server: Any, postgres: Any, repo: Any
) -> None:
    import uuid

    url = postgres.create_database(f"replicas_{uuid.uuid4().hex[:8]}")
    one, two = make_server(url, name="one"), make_server(url, name="two")
    cred = one.enroll("c-1", "web", "canary")
    # Replica two has read (and keeps) the fleet-wide state before the pin.
    assert two.desired("c-1", cred)["why"] == "hold"
    events: queue.Queue[Any] = queue.Queue()
    stream = _listen(two, "c-1", cred, events)
    try:
        assert two.ctl.relay.ready.wait(10)
        head = repo.git("rev-parse", "HEAD")
        r = one.request("PUT", "/v1/fleet/pin", one.token("admin"), json={"commit": head})
        assert r.status_code == 200, r.text
        assert _next_event(events) == ("policy-changed", {"commit": head, "why": "pin"})
        # The woken device asks replica two, which answers with the pin.
        answer = two.desired("c-1", cred)
        assert answer["why"] == "pin" and answer["commit"] == head
    finally:
        stream.close()


def test_past_its_stream_limit_the_server_tells_devices_to_poll(make_server: Any) -> None:
    """Each event stream holds a socket: past ``--max-streams`` a device is
    refused a stream (503, Retry-After) while its polls and reports go on."""
    server = make_server(max_streams=2)
    creds = {d: server.enroll(d, "web") for d in ("pi-1", "pi-2", "pi-3")}

    def stream(device: str) -> requests.Response:
        return requests.get(
            f"{server.url}/v1/devices/{device}/events",
            headers={"Authorization": f"Bearer {creds[device]}"},
            stream=True,
            timeout=10,
        )

    first = stream("pi-1")
    second = stream("pi-2")
    assert first.status_code == second.status_code == 200
    # Kept: a dropped line iterator closes its connection.
    lines = [first.iter_lines(), second.iter_lines()]
    assert [next(it) for it in lines] == [b": connected", b": connected"]

    assert (server.ctl.hub.max_streams, server.ctl.hub.connected) == (2, 2)
    third = stream("pi-3")
    assert third.status_code == 503
    assert third.headers["retry-after"] == "60"
    assert "most event streams (2)" in third.json()["error"]
    assert server.request("GET", "/v1/devices/pi-3/desired", creds["pi-3"]).status_code == 200
    r = server.request("POST", "/v1/devices/pi-3/status", creds["pi-3"], json={"status": "healthy"})
    assert r.status_code == 204

    first.close()  # a stream ends: its place is free again
    deadline = time.monotonic() + 10
    while server.ctl.hub.connected > 1:
        assert time.monotonic() < deadline, "the closed stream was not noticed"
        time.sleep(0.05)
    again = stream("pi-3")
    assert again.status_code == 200
    again.close()
    second.close()


def test_the_server_raises_its_file_descriptor_limit_and_leaves_a_reserve() -> None:
    """A service manager's soft limit of 1,024 would cap a server at a few
    hundred streams: ``server run`` raises it to the hard limit first."""
    import subprocess
    import sys

    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))\n"
        "from fleetcore.server.app import FD_RESERVE, raise_fd_limit, stream_room\n"
        "limit = raise_fd_limit()\n"
        "assert limit == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0], limit\n"
        "assert stream_room() == hard - FD_RESERVE, stream_room()\n"
        "print(limit)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) > 1024
