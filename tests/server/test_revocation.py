"""Listing and revoking operator tokens and device credentials, on a real
server, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

from fleetcore.server.auth import CREDENTIAL_TTL
from fleetcore.server.store import hash_secret


def _audit(server: Any, token: str, action: str) -> list[dict[str, Any]]:
    rows = server.request("GET", "/v1/audit", token).json()["audit"]
    return [a for a in rows if a["action"] == action]


def _ends_quietly(lines: Iterator[bytes], within: float = 10.0) -> bool:
    """The server closes the event stream, sending nothing but keep-alives first."""
    deadline = time.monotonic() + within
    for line in lines:
        if (line and line != b": keep-alive") or time.monotonic() > deadline:
            return False
    return True


def test_tokens_are_listed_without_secrets_and_refused_once_revoked(
    make_server: Any, db_url: str | None
) -> None:
    server = make_server(db_url)
    admin = server.token("admin")
    viewer = server.token("viewer")
    enrollment = server.enrollment_token()
    r = server.request(
        "POST",
        "/v1/tokens",
        admin,
        json={"role": "operator", "name": "ci", "expires": "2026-06-01T00:00:00Z"},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    operator, operator_id = created["token"], created["id"]
    assert created["expires_at"] == "2026-06-01T00:00:00+00:00"
    r = server.request(
        "POST", "/v1/tokens", admin, json={"role": "viewer", "expires": "2025-01-01T00:00:00Z"}
    )
    assert r.status_code == 400 and r.json()["field"] == "expires"
    assert server.request("GET", "/v1/fleet/status", operator).status_code == 200

    # The list names every token, operator and enrollment, and gives away no secret.
    r = server.request("GET", "/v1/tokens", admin)
    assert r.status_code == 200
    for secret in (admin, viewer, enrollment, operator):
        assert secret not in r.text and hash_secret(secret) not in r.text
    listed = {item["id"]: item for item in r.json()["tokens"]}
    assert listed[operator_id] == {
        "id": operator_id,
        "kind": "operator",
        "role": "operator",
        "name": "ci",
        "state": "active",
        "created_at": "2026-01-01T12:00:00+00:00",
        "created_by": "test-admin",
        "expires_at": "2026-06-01T00:00:00+00:00",
        "revoked": False,
        "revoked_at": None,
        "revoked_by": None,
    }
    assert sorted((i["kind"], i["role"]) for i in listed.values()) == [
        ("enrollment", None),
        ("operator", "admin"),
        ("operator", "operator"),
        ("operator", "viewer"),
    ]
    admin_id = next(i["id"] for i in listed.values() if i["name"] == "test-admin")

    # Viewers and operators may neither list nor revoke, and nothing changes.
    for caller in (viewer, operator):
        assert server.request("GET", "/v1/tokens", caller).status_code == 403
        r = server.request(
            "DELETE", f"/v1/tokens/{operator_id}", caller, json={"reason": "mine now"}
        )
        assert r.status_code == 403
    assert server.request("GET", "/v1/fleet/status", operator).status_code == 200
    r = server.request("DELETE", "/v1/tokens/9999", admin, json={"reason": "typo"})
    assert r.status_code == 404 and r.json() == {"error": "unknown token 9999", "field": "id"}
    assert server.request("DELETE", "/v1/tokens/ci", admin).status_code == 400
    assert _audit(server, viewer, "token.revoke") == []

    # Revoked: refused from the next request on.
    r = server.request(
        "DELETE", f"/v1/tokens/{operator_id}", admin, json={"reason": "laptop stolen"}
    )
    assert r.status_code == 200, r.text
    item = r.json()
    assert (item["state"], item["revoked"], item["revoked_by"]) == ("revoked", True, "test-admin")
    assert item["revoked_at"] == "2026-01-01T12:00:00+00:00"
    r = server.request("GET", "/v1/fleet/status", operator)
    assert r.status_code == 401
    r = server.request("DELETE", f"/v1/tokens/{operator_id}", admin, json={"reason": "again"})
    assert r.status_code == 409

    # Enrollment tokens too; and without a body (the reason is optional, as elsewhere).
    enrollment_id = next(i["id"] for i in listed.values() if i["kind"] == "enrollment")
    assert server.request("DELETE", f"/v1/tokens/{enrollment_id}", admin).status_code == 200
    r = server.request(
        "POST",
        "/v1/enroll",
        json={"enrollment_token": enrollment, "device_id": "pi-9", "role": "web"},
    )
    assert r.status_code == 401

    revocations = _audit(server, viewer, "token.revoke")
    entry = next(a for a in revocations if a["target"] == str(operator_id))
    assert (entry["actor"], entry["reason"]) == ("test-admin", "laptop stolen")
    assert entry["detail"] == {"kind": "operator", "role": "operator", "name": "ci"}

    # An admin may revoke the very token they use: that request still completes.
    r = server.request("DELETE", f"/v1/tokens/{admin_id}", admin, json={"reason": "rotated"})
    assert r.status_code == 200
    assert server.request("GET", "/v1/tokens", admin).status_code == 401


def test_a_revoked_device_is_refused_at_once_and_can_enroll_again(
    make_server: Any, db_url: str | None
) -> None:
    server = make_server(db_url)
    admin = server.token("admin")
    viewer = server.token("viewer")
    cred = server.enroll("pi-1")
    other = server.enroll("pi-2")
    # The status path and 304s answered from memory have both seen the credential.
    server.report("pi-1", cred, status="healthy")
    etag = server.request("GET", "/v1/devices/pi-1/desired", cred).headers["etag"]
    for _ in range(2):
        r = server.request("GET", "/v1/devices/pi-1/desired", cred, headers={"If-None-Match": etag})
        assert r.status_code == 304
    stream = server.request("GET", "/v1/devices/pi-1/events", cred, stream=True)
    lines = stream.iter_lines()
    assert next(lines) == b": connected"

    r = server.request("POST", "/v1/devices/pi-1/revoke", viewer, json={"reason": "x"})
    assert r.status_code == 403
    server.report("pi-1", cred, status="healthy")
    r = server.request("POST", "/v1/devices/nobody/revoke", admin, json={"reason": "x"})
    assert r.status_code == 404
    assert r.json() == {"error": "unknown device 'nobody'", "field": "device_id"}

    r = server.request("POST", "/v1/devices/pi-1/revoke", admin, json={"reason": "stolen"})
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] == "2026-01-01T12:00:00+00:00"
    # At once, though the credential was remembered a moment ago.
    r = server.request("GET", "/v1/devices/pi-1/desired", cred, headers={"If-None-Match": etag})
    assert r.status_code == 401
    assert server.request("GET", "/v1/devices/pi-1/desired", cred).status_code == 401
    r = server.request("POST", "/v1/devices/pi-1/status", cred, json={"status": "healthy"})
    assert r.status_code == 401
    r = server.request("POST", "/v1/devices/pi-1/history", cred, json={"entries": []})
    assert r.status_code == 401
    assert server.request("GET", "/v1/devices/pi-1/events", cred).status_code == 401
    assert _ends_quietly(lines)
    server.report("pi-2", other, status="healthy")
    r = server.request("POST", "/v1/devices/pi-1/revoke", admin, json={"reason": "again"})
    assert r.status_code == 409
    device = server.request("GET", "/v1/devices/pi-1", viewer).json()
    assert device["revoked_at"] is not None and device["status"] == "healthy"

    # An enrollment token alone does not bring it back; with an admin's
    # one-time approval, enrolling again gives it a working credential.
    token = server.enrollment_token()
    body = {"enrollment_token": token, "device_id": "pi-1", "role": "web"}
    assert server.request("POST", "/v1/enroll", json=body).status_code == 409
    r = server.request("POST", "/v1/devices/pi-1/allow-reenroll", admin, json={"reason": "fixed"})
    assert r.status_code == 200, r.text
    new = server.enroll("pi-1")
    assert server.desired("pi-1", new)["why"] == "hold"
    server.report("pi-1", new, status="healthy")
    assert server.request("GET", "/v1/devices/pi-1", viewer).json()["revoked_at"] is None
    [entry] = _audit(server, viewer, "device.revoke")
    assert (entry["actor"], entry["target"], entry["reason"]) == ("test-admin", "pi-1", "stolen")


def _until(condition: Any, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_replicas_refuse_a_revoked_device_at_once(
    make_server: Any, postgres: Any, clock: Any
) -> None:
    url = postgres.create_database(f"revoke_{uuid.uuid4().hex[:8]}")
    here = make_server(url, name="here")
    there = make_server(url, name="there")
    assert there.ctl.relay is not None and there.ctl.relay.ready.wait(10)
    admin = here.token("admin")
    cred = here.enroll("pi-1")
    there.report("pi-1", cred, status="healthy")  # the replica remembers the credential
    assert there.ctl.auth.remembered(f"Bearer {cred}") == "pi-1"
    stream = there.request("GET", "/v1/devices/pi-1/events", cred, stream=True)
    lines = stream.iter_lines()
    assert next(lines) == b": connected"

    r = here.request("POST", "/v1/devices/pi-1/revoke", admin, json={"reason": "stolen"})
    assert r.status_code == 200
    r = here.request("POST", "/v1/devices/pi-1/status", cred, json={"status": "healthy"})
    assert r.status_code == 401
    # The replica's stream ends and it forgets the credential, both through
    # the relay, with no time passing on the server's clock.
    assert _ends_quietly(lines)
    assert _until(lambda: there.ctl.auth.remembered(f"Bearer {cred}") is None)
    r = there.request("POST", "/v1/devices/pi-1/status", cred, json={"status": "healthy"})
    assert r.status_code == 401
    assert there.request("GET", "/v1/devices/pi-1/desired", cred).status_code == 401
    # Rotating through one replica retires the old credential on the other too.
    cred2 = here.enroll("pi-2")
    there.report("pi-2", cred2, status="healthy")
    assert here.request("POST", "/v1/devices/pi-2/credential", cred2).status_code == 200
    assert _until(lambda: there.ctl.auth.remembered(f"Bearer {cred2}") is None)
    r = there.request("POST", "/v1/devices/pi-2/status", cred2, json={"status": "healthy"})
    assert r.status_code == 401


def test_a_replica_that_lost_the_relay_forgets_every_credential(
    make_server: Any, postgres: Any, clock: Any
) -> None:
    """While its listening connection is down a replica may miss a note to
    forget a credential, so on reconnecting it forgets them all."""
    import sqlalchemy as sa

    url = postgres.create_database(f"relay_{uuid.uuid4().hex[:8]}")
    here = make_server(url, name="here")
    there = make_server(url, name="there")
    assert there.ctl.relay is not None and there.ctl.relay.ready.wait(10)
    cred = here.enroll("pi-1")
    there.report("pi-1", cred, status="healthy")
    assert there.ctl.auth.remembered(f"Bearer {cred}") == "pi-1"

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                )
            ).all()
    finally:
        engine.dispose()
    assert killed  # both replicas' listeners
    assert _until(lambda: not there.ctl.relay.ready.is_set(), within=15)
    assert there.ctl.relay.ready.wait(15)
    assert there.ctl.auth.remembered(f"Bearer {cred}") is None
    # The device itself goes on working: its credential is looked up again.
    r = there.request("POST", "/v1/devices/pi-1/status", cred, json={"status": "healthy"})
    assert r.status_code == 204
    assert there.ctl.auth.remembered(f"Bearer {cred}") == "pi-1"


def test_a_lone_server_keeps_credentials_past_a_report_interval(server: Any, clock: Any) -> None:
    """Without replicas every change that invalidates a credential happens on
    this server, so credentials stay in memory longer than devices take to
    report again; enrolling another device does not make anyone look up again."""
    assert server.ctl.relay is None
    cred = server.enroll("pi-1")
    server.report("pi-1", cred, status="healthy")
    header = f"Bearer {cred}"
    clock.advance(90)  # longer than a report interval
    assert server.ctl.auth.remembered(header) == "pi-1"
    server.enroll("pi-2")
    assert server.ctl.auth.remembered(header) == "pi-1"
    # A refused takeover leaves it remembered; a rotation forgets it at once.
    body = {"enrollment_token": server.enrollment_token(), "device_id": "pi-1", "role": "web"}
    assert server.request("POST", "/v1/enroll", json=body).status_code == 409
    assert server.ctl.auth.remembered(header) == "pi-1"
    assert server.request("POST", "/v1/devices/pi-1/credential", cred).status_code == 200
    assert server.ctl.auth.remembered(header) is None
    r = server.request("POST", "/v1/devices/pi-1/status", cred, json={"status": "healthy"})
    assert r.status_code == 401


def test_credentials_remembered_together_do_not_lapse_together(server: Any, clock: Any) -> None:
    """A wave of devices (an enrollment storm, a restart) is remembered in the
    same seconds; their entries lapse spread over the second half of the
    lifetime, so the whole wave does not go back to the database at once."""
    headers = []
    for n in range(20):
        cred = server.enroll(f"pi-{n}")
        server.report(f"pi-{n}", cred, status="healthy")
        headers.append(f"Bearer {cred}")

    def remembered() -> int:
        return sum(server.ctl.auth.remembered(h) is not None for h in headers)

    clock.advance(CREDENTIAL_TTL * 0.5 - 10)
    assert remembered() == 20
    clock.advance(CREDENTIAL_TTL * 0.25 + 10)
    assert 0 < remembered() < 20
    clock.advance(CREDENTIAL_TTL * 0.25 + 1)
    assert remembered() == 0
