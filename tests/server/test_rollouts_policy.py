"""Rollout health gates, percentage eligibility, fleet and device policy."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import sqlalchemy as sa

from fleetcore.policy import percentage_bucket
from fleetcore.server import store as t


def test_percentage_share_over_1000_devices(server: Any, repo: Any) -> None:
    operator = server.token("operator")
    head = repo.git("rev-parse", "HEAD")
    # 1000 enrolled devices, written straight to the database: the HTTP path
    # of enrollment is covered elsewhere and would only make this slow.
    now = time.time()
    with server.ctl.store.begin() as conn:
        conn.execute(
            t.devices.insert(),
            [
                {
                    "device_id": f"dev-{i:04d}",
                    "role": "web",
                    "segment": "general",
                    "credential_hash": f"x{i}",
                    "enrolled_at": now,
                    "status": "unknown",
                }
                for i in range(1000)
            ],
        )
    r = server.request(
        "POST",
        "/v1/rollouts",
        operator,
        json={
            "commit": head,
            "strategy": "percentage",
            "role": "web",
            "steps": [
                {"options": {"percent": 5}, "wait_seconds": 60},
                {"options": {"percent": 25}, "wait_seconds": 60},
            ],
        },
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    targeted = r.json()["progress"][0]["targeted"]
    assert abs(targeted - 50) <= 25, targeted
    expected = sum(percentage_bucket(f"dev-{i:04d}", head) < 5 for i in range(1000))
    assert targeted == expected
    r = server.request("POST", f"/v1/rollouts/{rid}/promote", operator, json={"reason": "looks ok"})
    assert r.status_code == 200
    steps = r.json()["progress"]
    assert abs(steps[1]["targeted"] - 250) <= 40, steps
    # Monotone: every device of the 5% step is still in at 25%.
    assert steps[1]["targeted"] >= steps[0]["targeted"]


def test_health_gate_halts_then_abort_returns_to_stable(
    make_server: Any, db_url: str | None, repo: Any, clock: Any
) -> None:
    server = make_server(db_url)
    operator = server.token("operator")
    first = repo.git("rev-parse", "HEAD")
    names = [f"pi-{i}" for i in range(5)]
    creds = {n: server.enroll(n, "web") for n in names}
    # The first commit finishes rolling out at once (one step, no wait).
    r = server.request(
        "POST",
        "/v1/rollouts",
        operator,
        json={
            "commit": first,
            "strategy": "percentage",
            "steps": [{"options": {"percent": 100}, "wait_seconds": 0}],
        },
    )
    assert r.status_code == 201
    for n in names:
        server.report(n, creds[n], status="healthy", commit=first)
    server.tick()
    assert (
        server.request("GET", "/v1/rollouts", operator).json()["rollouts"][0]["state"]
        == "completed"
    )

    bad = repo.commit({"roles/web/activate.sh": "#!/bin/sh\nexit 1\n"}, "broken")
    r = server.request(
        "POST",
        "/v1/rollouts",
        operator,
        json={
            "commit": bad,
            "strategy": "percentage",
            "role": "web",
            "steps": [{"options": {"percent": 100}, "wait_seconds": 300}],
        },
    )
    rid = r.json()["id"]
    assert server.desired("pi-0", creds["pi-0"])["commit"] == bad
    # One failure of five is 20%: not beyond the threshold yet.
    server.request(
        "POST",
        "/v1/devices/pi-0/history",
        creds["pi-0"],
        json={
            "entries": [
                {
                    "timestamp": "2026-01-01T12:00:01Z",
                    "from_commit": first,
                    "to_commit": bad,
                    "result": "rollback",
                    "reason": "health check failed",
                }
            ]
        },
    )
    server.tick()
    assert server.request("GET", f"/v1/rollouts/{rid}", operator).json()["state"] == "running"
    server.report("pi-1", creds["pi-1"], status="failed", commit=bad, current_error="exit 1")
    server.tick()
    ro = server.request("GET", f"/v1/rollouts/{rid}", operator).json()
    assert ro["state"] == "halted"
    assert "2 of 5 targeted devices failed" in ro["reason"]
    assert ro["decisions"][-1]["action"] == "halt"
    assert ro["progress"][0]["failed"] == 2 and ro["progress"][0]["failing"] == 2
    # A halt means nobody else gets the commit: pi-4 had not updated yet and
    # stays on the stable one; pi-1 runs the bad commit and is not moved by a halt.
    d = server.desired("pi-4", creds["pi-4"])
    assert (d["commit"], d["why"], d["rollout"]) == (first, "stable", None)
    assert server.desired("pi-1", creds["pi-1"])["commit"] == bad
    # Halted: no promotion, whatever the clock says.
    clock.advance(3600)
    server.tick()
    assert server.request("GET", f"/v1/rollouts/{rid}", operator).json()["state"] == "halted"

    # Halted rollouts are resumed, not promoted.
    r = server.request("POST", f"/v1/rollouts/{rid}/promote", operator)
    assert r.status_code == 409 and "resume" in r.json()["error"]
    # The failed device rolled back; the operator resumes: failures seen before
    # the resume do not halt it again, a new one does.
    server.report("pi-1", creds["pi-1"], status="healthy", commit=first)
    r = server.request("POST", f"/v1/rollouts/{rid}/resume", operator, json={"reason": "flaky"})
    assert r.status_code == 200 and r.json()["state"] == "running"
    server.tick()
    assert server.request("GET", f"/v1/rollouts/{rid}", operator).json()["state"] == "running"
    for name in ("pi-2", "pi-3"):
        server.report(name, creds[name], status="safe_mode", commit=bad)
    server.tick()
    ro = server.request("GET", f"/v1/rollouts/{rid}", operator).json()
    assert ro["state"] == "halted" and "2 of 5" in ro["reason"]

    r = server.request("POST", f"/v1/rollouts/{rid}/abort", operator, json={"reason": "bad build"})
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    d = server.desired("pi-1", creds["pi-1"])
    assert d["commit"] == first and d["why"] == "stable"
    # An aborted rollout cannot be resumed.
    r = server.request("POST", f"/v1/rollouts/{rid}/resume", operator)
    assert r.status_code == 409
    audit = server.request("GET", "/v1/audit", operator).json()["audit"]
    actions = [(a["actor"], a["action"]) for a in audit]
    assert ("rollout-engine", "rollout.halt") in actions
    assert ("test-operator", "rollout.abort") in actions


def test_pin_lock_override_precedence_and_lapse(server: Any, repo: Any, clock: Any) -> None:
    admin, operator = server.token("admin"), server.token("operator")
    first = repo.git("rev-parse", "HEAD")
    staging = repo.commit(
        {"roles/web/activate.sh": "#!/bin/sh\necho staging\n"}, "s", branch="staging"
    )
    a, b = server.enroll("pi-a", "web"), server.enroll("pi-b", "web")

    # Operators run rollouts; only admins pin.
    body = {"commit": first, "reason": "incident 42", "expires": "2026-01-01T13:00:00Z"}
    r = server.request("PUT", "/v1/fleet/pin", operator, json=body)
    assert r.status_code == 403
    r = server.request("PUT", "/v1/fleet/pin", admin, json=body)
    assert r.status_code == 200, r.text
    d = server.desired("pi-a", a)
    assert d["commit"] == first and d["why"] == "pin" and "incident 42" in d["reason"]

    # A device lock beats the pin; a branch override is below the pin.
    r = server.request(
        "PUT",
        "/v1/devices/pi-b/lock",
        admin,
        json={"commit": staging, "reason": "debugging", "until": "2026-01-01T12:30:00Z"},
    )
    assert r.status_code == 200, r.text
    d = server.desired("pi-b", b)
    assert d["commit"] == staging and d["why"] == "lock" and "test-admin" in d["reason"]
    r = server.request("PUT", "/v1/devices/pi-a/override", admin, json={"branch": "staging"})
    assert r.status_code == 200 and r.json()["desired"]["why"] == "pin"

    # The lock lapses by itself; then the pin does.
    clock.advance(31 * 60)
    server.tick()
    assert server.desired("pi-b", b)["why"] == "pin"
    clock.advance(30 * 60)
    server.tick()
    d = server.desired("pi-a", a)
    assert d["why"] == "override" and d["commit"] == staging and d["branch"] == "staging"
    actions = [x["action"] for x in server.request("GET", "/v1/audit", admin).json()["audit"]]
    assert "device.lock.expired" in actions and "fleet.pin.expired" in actions

    # Updates off wins over everything.
    r = server.request("PUT", "/v1/devices/pi-a/override", admin, json={"auto_update": False})
    assert r.json()["desired"]["why"] == "maintenance"
    r = server.request("PUT", "/v1/devices/pi-a/override", admin, json={"clear": True})
    assert r.json()["desired"]["why"] == "hold"
    with server.ctl.store.connect() as conn:
        rows = conn.execute(sa.select(t.audit.c.actor, t.audit.c.action)).all()
    assert ("test-admin", "device.override") in rows and ("test-admin", "fleet.pin") in rows


def test_offline_marking_and_metrics(server: Any, clock: Any, repo: Any) -> None:
    cred = server.enroll("pi-1", "web")
    server.enroll("pi-2", "cam")
    server.report("pi-1", cred, status="healthy", commit=repo.git("rev-parse", "HEAD"))
    clock.advance(120)
    server.tick()
    viewer = server.token("viewer")
    assert server.request("GET", "/v1/devices/pi-1", viewer).json()["status"] == "healthy"
    clock.advance(61)
    server.tick()
    assert server.request("GET", "/v1/devices/pi-1", viewer).json()["status"] == "offline"
    server.report("pi-1", cred, status="degraded")
    text = server.request("GET", "/metrics").text
    assert 'fleetcore_devices{status="degraded"} 1' in text
    assert 'fleetcore_devices{status="offline"} 1' in text
    assert 'fleetcore_devices_by_role{role="cam"} 1' in text
    assert (
        'fleetcore_http_request_duration_seconds_count{method="POST",route="/v1/devices/{device_id}/status",status="204"}'
        in text
    )


def test_expired_enrollment_token_and_device_window(server: Any, clock: Any) -> None:
    token = server.ctl.store.create_token("enrollment", None, ttl=600, now=clock.now().timestamp())
    body = {"enrollment_token": token, "device_id": "pi-9", "role": "web", "segment": "early"}
    assert server.request("POST", "/v1/enroll", json=body).status_code == 201
    clock.advance(601)
    r = server.request("POST", "/v1/enroll", json={**body, "device_id": "pi-10"})
    assert r.status_code == 401 and "expired" in r.json()["error"]

    cred = server.enroll("pi-11", "web")
    admin = server.token("admin")
    window = {"days": ["sunday"], "start": "23:00", "end": "01:00", "timezone": "UTC"}
    r = server.request(
        "PUT", "/v1/devices/pi-11/override", admin, json={"maintenance_window": window}
    )
    assert r.status_code == 200, r.text
    assert server.desired("pi-11", cred)["maintenance_window"] == window
    bad = {"maintenance_window": {**window, "start": "25:00"}}
    r = server.request("PUT", "/v1/devices/pi-11/override", admin, json=bad)
    assert r.status_code == 400 and r.json()["field"] == "maintenance_window.start"


def test_rollout_to_every_role_skips_roles_the_commit_lacks(
    server: Any, repo: Any, clock: Any
) -> None:
    operator = server.token("operator")
    web, cam = server.enroll("w-1", "web"), server.enroll("k-1", "cam")
    first = repo.git("rev-parse", "HEAD")
    only_web = repo.commit({"roles/cam": None}, "drop cam")
    for commit in (first, only_web):
        r = server.request(
            "POST",
            "/v1/rollouts",
            operator,
            json={"commit": commit, "strategy": "percentage",
                  "steps": [{"options": {"percent": 100}, "wait_seconds": 0}]},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        server.report("w-1", web, status="healthy", commit=commit)
        if commit == first:
            server.report("k-1", cam, status="healthy", commit=commit)
        server.tick()
    assert server.desired("w-1", web)["commit"] == only_web
    d = server.desired("k-1", cam)
    assert d["commit"] == first and d["why"] == "stable"
    stable = server.request("GET", "/v1/fleet/status", operator).json()["stable"]
    assert stable == {"web": only_web, "cam": first}


def test_a_steps_progress_follows_enrollments_locks_and_the_clock(
    server: Any, repo: Any, clock: Any
) -> None:
    """A step's targeted devices are remembered between calls (a pass over a
    large fleet is expensive), yet what an operator does shows at once and a
    lock running out shows once the memory lapses."""
    operator, admin = server.token("operator"), server.token("admin")
    head = repo.git("rev-parse", "HEAD")
    for i in range(3):
        server.enroll(f"can-{i}", "web", "canary")
    server.enroll("gen-0", "web", "general")
    r = server.request(
        "POST",
        "/v1/rollouts",
        operator,
        json={"commit": head, "strategy": "canary", "role": "web", "wait_seconds": 3600},
    )
    assert r.status_code == 201, r.text
    rid = r.json()["id"]

    def targeted() -> int:
        r = server.request("GET", f"/v1/rollouts/{rid}", operator)
        assert r.status_code == 200, r.text
        return int(r.json()["progress"][0]["targeted"])

    assert targeted() == 3
    # An enrollment moves nobody's desired state (no new generation), yet
    # the new canary is in the canary step's count.
    server.enroll("can-3", "web", "canary")
    assert targeted() == 4
    # A lock is the operator's word over the rollout's: out of the step now.
    until = (clock.now() + dt.timedelta(minutes=5)).isoformat()
    lock = {"commit": head, "reason": "field test", "until": until}
    r = server.request("PUT", "/v1/devices/can-0/lock", admin, json=lock)
    assert r.status_code == 200, r.text
    assert targeted() == 3
    # Run out (no engine tick here to lapse it): back in the step.
    clock.advance(6 * 60)
    assert targeted() == 4
    status = server.request("GET", "/v1/fleet/status", operator).json()
    assert status["rollouts"][0]["progress"][0]["targeted"] == 4
