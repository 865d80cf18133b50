"""Enrollment that cannot take a device over: an enrolled id needs its own
credential or an admin's one-time approval; tokens are scoped; devices can
wait for acceptance; secrets per device."""

from __future__ import annotations

from typing import Any


def _audit(server: Any, token: str, action: str) -> list[dict[str, Any]]:
    rows = server.request("GET", "/v1/audit?limit=500", token).json()["audit"]
    return [a for a in rows if a["action"] == action]


def _enroll(server: Any, token: str, device_id: str, **extra: Any) -> Any:
    body = {"enrollment_token": token, "device_id": device_id, "role": "web", **extra}
    return server.request("POST", "/v1/enroll", json=body)


def test_a_takeover_with_a_valid_enrollment_token_is_refused_and_logged(
    make_server: Any, db_url: str | None
) -> None:
    server = make_server(db_url)
    viewer = server.token("viewer")
    real = server.enroll("pi-1")
    server.report("pi-1", real, status="healthy")

    # A stranger holding a valid enrollment token claims the device's id.
    stolen = server.enrollment_token()
    r = _enroll(server, stolen, "pi-1", hostname="evil")
    assert r.status_code == 409, r.text
    assert r.json()["field"] == "device_id"
    assert "already enrolled" in r.json()["error"] and "--rotate" in r.json()["error"]
    assert "credential" not in r.json()

    # The real device keeps working, and its record is unchanged.
    assert server.desired("pi-1", real)["why"] == "hold"
    server.report("pi-1", real, status="healthy")
    device = server.request("GET", "/v1/devices/pi-1", viewer).json()
    assert device["hostname"] == "pi-1.local"
    [refused] = _audit(server, viewer, "device.enroll.refused")
    assert refused["target"] == "pi-1" and refused["actor"].startswith("enrollment:")
    assert not _audit(server, viewer, "device.reenroll")

    # A revoked device is no easier to claim.
    admin = server.token("admin")
    r = server.request("POST", "/v1/devices/pi-1/revoke", admin, json={"reason": "lost"})
    assert r.status_code == 200
    assert _enroll(server, stolen, "pi-1").status_code == 409


def test_a_device_rotates_its_credential_with_its_current_one(server: Any) -> None:
    viewer = server.token("viewer")
    old = server.enroll("pi-1")
    other = server.enroll("pi-2")
    server.report("pi-1", old, status="healthy")  # remembered in memory

    for who in (other, viewer, None):
        r = server.request("POST", "/v1/devices/pi-1/credential", who, json={})
        assert r.status_code in (401, 403), r.text
    r = server.request("POST", "/v1/devices/pi-1/credential", old, json={})
    assert r.status_code == 200, r.text
    new = r.json()["credential"]
    assert new != old and r.headers["cache-control"] == "no-store"
    assert server.request("GET", "/v1/devices/pi-1/desired", old).status_code == 401
    assert server.desired("pi-1", new)["why"] == "hold"
    [entry] = _audit(server, viewer, "device.rotate")
    assert entry["target"] == "pi-1" and entry["actor"] == "device:pi-1"


def test_an_admin_allows_one_reenrollment_which_expires(server: Any, clock: Any) -> None:
    admin = server.token("admin")
    operator = server.token("operator")
    viewer = server.token("viewer")
    old = server.enroll("pi-1")
    token = server.enrollment_token()

    path = "/v1/devices/pi-1/allow-reenroll"
    assert server.request("POST", path, operator, json={"reason": "x"}).status_code == 403
    r = server.request("POST", path, admin, json={"reason": ""})
    assert r.status_code == 400 and r.json()["field"] == "reason"
    r = server.request("POST", "/v1/devices/nobody/allow-reenroll", admin, json={"reason": "x"})
    assert r.status_code == 404

    r = server.request("POST", path, admin, json={"reason": "sd card replaced"})
    assert r.status_code == 200, r.text
    r = _enroll(server, token, "pi-1")
    assert r.status_code == 201, r.text
    new = r.json()["credential"]
    assert server.request("GET", "/v1/devices/pi-1/desired", old).status_code == 401
    assert server.desired("pi-1", new)["why"] == "hold"
    # One use.
    assert _enroll(server, token, "pi-1").status_code == 409
    [allowed] = _audit(server, viewer, "device.allow-reenroll")
    assert allowed["reason"] == "sd card replaced" and allowed["target"] == "pi-1"

    # An approval not used in time lapses.
    r = server.request("POST", path, admin, json={"reason": "again", "ttl_seconds": 60})
    assert r.status_code == 200
    clock.sleep(120)
    assert _enroll(server, token, "pi-1").status_code == 409
    assert server.desired("pi-1", new)["why"] == "hold"


def test_enrollment_tokens_are_scoped_and_counted(make_server: Any, db_url: str | None) -> None:
    server = make_server(db_url)
    admin = server.token("admin")
    operator = server.token("operator")
    scope = {"role": "web", "segment": "canary", "max_uses": 2, "ttl_seconds": 3600}
    r = server.request("POST", "/v1/enrollment-tokens", operator, json=scope)
    assert r.status_code == 403
    r = server.request("POST", "/v1/enrollment-tokens", admin, json={**scope, "max_uses": 0})
    assert r.status_code == 400 and r.json()["field"] == "max_uses"
    r = server.request("POST", "/v1/enrollment-tokens", admin, json={**scope, "name": "lab"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert token.startswith("fce_") and r.json()["max_uses"] == 2

    r = _enroll(server, token, "cam-1", role="cam", segment="canary")
    assert r.status_code == 403 and r.json()["field"] == "role", r.text
    assert "'web'" in r.json()["error"]
    r = _enroll(server, token, "pi-1", segment="general")
    assert r.status_code == 403 and r.json()["field"] == "segment"
    for name in ("pi-1", "pi-2"):
        assert _enroll(server, token, name, segment="canary").status_code == 201
    r = _enroll(server, token, "pi-3", segment="canary")
    assert r.status_code == 403 and r.json()["field"] == "enrollment_token"
    assert "2 of 2" in r.json()["error"]

    listed = server.request("GET", "/v1/tokens", admin).json()["tokens"]
    [item] = [i for i in listed if i["name"] == "lab"]
    assert item["uses"] == 2 and item["state"] == "used-up" and item["segment"] == "canary"
    assert item["role"] == "web" and "token" not in item


def test_a_device_waits_for_acceptance_when_its_token_requires_it(
    make_server: Any, db_url: str | None, repo: Any
) -> None:
    server = make_server(db_url)
    admin = server.token("admin")
    viewer = server.token("viewer")
    head = repo.git("rev-parse", "HEAD")
    r = server.request(
        "PUT", "/v1/secrets/web/API_KEY", admin, json={"value": "s3cret", "reason": "x"}
    )
    assert r.status_code == 200
    body = {"require_approval": True, "ttl_seconds": 3600}
    token = server.request("POST", "/v1/enrollment-tokens", admin, json=body).json()["token"]
    r = _enroll(server, token, "pi-1", hostname="pi-1.local")
    assert r.status_code == 201 and r.json()["pending"] is True
    cred = r.json()["credential"]

    # It may report (so an admin sees it), nothing more.
    server.report("pi-1", cred, status="healthy")
    for path in (
        "/v1/devices/pi-1/desired",
        "/v1/devices/pi-1/secrets",
        f"/v1/archives/{head}/web",
        f"/v1/manifests/{head}/web",
    ):
        r = server.request("GET", path, cred)
        assert r.status_code == 403, (path, r.text)
        assert "fleetcore fleet device accept pi-1" in r.json()["error"]
    device = server.request("GET", "/v1/devices/pi-1", viewer).json()
    assert device["pending"] is True and device["status"] == "healthy"
    # The dashboard says so, and what to do.
    from fleetcore.server.pages import COOKIE

    page = server.request("GET", "/devices/pi-1", cookies={COOKIE: viewer}).text
    assert "pending: no desired state or secrets" in page
    assert "fleetcore fleet device accept pi-1" in page

    r = server.request("POST", "/v1/devices/pi-1/accept", viewer, json={})
    assert r.status_code == 403
    r = server.request("POST", "/v1/devices/pi-1/accept", admin, json={"reason": "checked"})
    assert r.status_code == 200, r.text
    assert server.desired("pi-1", cred)["why"] == "hold"
    r = server.request("GET", "/v1/devices/pi-1/secrets", cred)
    assert r.status_code == 200 and r.json()["values"] == {"API_KEY": "s3cret"}
    assert server.request("GET", f"/v1/archives/{head}/web", cred).status_code == 200
    assert server.request("POST", "/v1/devices/pi-1/accept", admin, json={}).status_code == 409
    assert _audit(server, viewer, "device.accept")[0]["reason"] == "checked"


def test_secrets_per_device_win_over_the_role(server: Any) -> None:
    admin = server.token("admin")
    viewer = server.token("viewer")
    one = server.enroll("pi-1")
    two = server.enroll("pi-2")
    for name, value in (("API_KEY", "role-key"), ("REGION", "eu")):
        r = server.request("PUT", f"/v1/secrets/web/{name}", admin, json={"value": value})
        assert r.status_code == 200
    r = server.request("PUT", "/v1/device-secrets/pi-1/API_KEY", viewer, json={"value": "x"})
    assert r.status_code == 403
    r = server.request("PUT", "/v1/device-secrets/nobody/API_KEY", admin, json={"value": "x"})
    assert r.status_code == 404
    r = server.request(
        "PUT", "/v1/device-secrets/pi-1/API_KEY", admin, json={"value": "pi-1-key", "reason": "r"}
    )
    assert r.status_code == 200, r.text

    def values(device_id: str, cred: str) -> dict[str, str]:
        r = server.request("GET", f"/v1/devices/{device_id}/secrets", cred)
        assert r.status_code == 200, r.text
        data: dict[str, str] = r.json()["values"]
        return data

    assert values("pi-1", one) == {"API_KEY": "pi-1-key", "REGION": "eu"}
    assert values("pi-2", two) == {"API_KEY": "role-key", "REGION": "eu"}
    listed = server.request("GET", "/v1/device-secrets/pi-1", viewer).json()
    assert [s["name"] for s in listed["secrets"]] == ["API_KEY"]
    assert "pi-1-key" not in str(listed)
    audit = server.request("GET", "/v1/audit", viewer).json()["audit"]
    assert any(a["target"] == "device:pi-1/API_KEY" for a in audit)
    assert "pi-1-key" not in str(audit)

    r = server.request("DELETE", "/v1/device-secrets/pi-1/API_KEY", admin, json={})
    assert r.status_code == 204
    assert values("pi-1", one) == {"API_KEY": "role-key", "REGION": "eu"}


def test_new_devices_enrolling_leave_everyone_elses_etag_alone(server: Any) -> None:
    """An enrollment storm must not turn every poll of the fleet into a full
    answer; a re-enrollment (which may change the device's role) must."""
    admin = server.token("admin")
    token = server.enrollment_token()
    cred = server.enroll("pi-1")

    def etag() -> str:
        return str(server.request("GET", "/v1/devices/pi-1/desired", cred).headers["etag"])

    def poll(tag: str) -> int:
        r = server.request("GET", "/v1/devices/pi-1/desired", cred, headers={"If-None-Match": tag})
        return int(r.status_code)

    before = etag()
    for i in range(5):
        assert _enroll(server, token, f"new-{i}").status_code == 201
    assert poll(before) == 304

    r = server.request("POST", "/v1/devices/new-0/allow-reenroll", admin, json={"reason": "swap"})
    assert r.status_code == 200
    before = etag()
    assert _enroll(server, token, "new-0", segment="canary").status_code == 201
    assert poll(before) == 200
