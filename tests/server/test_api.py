"""The device and operator API on a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any


def test_enroll_desired_status_history(make_server: Any, db_url: str | None, repo: Any) -> None:
    server = make_server(db_url)
    viewer = server.token("viewer")

    # Enrollment with an unknown token is refused; a good one gives a credential.
    r = server.request(
        "POST",
        "/v1/enroll",
        json={"enrollment_token": "fce_nope", "device_id": "pi-1", "role": "web"},
    )
    assert r.status_code == 401 and r.json()["field"] == "enrollment_token"
    cred = server.enroll("pi-1", "web", "canary")
    other = server.enroll("pi-2", "web")

    # Nothing rolled out yet: hold, with an ETag that makes the next poll cheap.
    r = server.request("GET", "/v1/devices/pi-1/desired", cred)
    assert r.status_code == 200
    body = r.json()
    assert body["commit"] is None and body["why"] == "hold"
    assert set(body) == {
        "commit",
        "why",
        "reason",
        "branch",
        "maintenance_window",
        "rollout",
        "resume",
        "safe_mode",
    }
    etag = r.headers["etag"]
    r = server.request("GET", "/v1/devices/pi-1/desired", cred, headers={"If-None-Match": etag})
    assert r.status_code == 304

    # Another device's credential is refused; so is no credential.
    assert server.request("GET", "/v1/devices/pi-1/desired", other).status_code == 403
    assert server.request("GET", "/v1/devices/pi-1/desired").status_code == 401
    assert server.request("POST", "/v1/devices/pi-1/status", other, json={}).status_code == 403

    head = repo.git("rev-parse", "HEAD")
    server.report(
        "pi-1",
        cred,
        status="healthy",
        commit=head,
        agent_version="1.0",
        cpu_percent=12.5,
        uptime_seconds=3600,
        mode="managed",
    )
    entry = {
        "timestamp": "2026-01-01T11:00:00Z",
        "from_commit": None,
        "to_commit": head,
        "result": "success",
        "reason": "first release",
        "duration_seconds": 4.2,
    }
    for _ in range(2):  # the agent resends what it is not sure arrived
        r = server.request("POST", "/v1/devices/pi-1/history", cred, json={"entries": [entry]})
        assert r.status_code == 204, r.text

    d = server.request("GET", "/v1/devices/pi-1", viewer).json()
    assert d["status"] == "healthy" and d["commit"] == head and d["cpu_percent"] == 12.5
    assert d["last_seen"] is not None and d["hostname"] == "pi-1.local"
    assert len(d["history"]) == 1 and d["history"][0]["reason"] == "first release"

    # Re-enrolling (allowed once by an admin) issues a new credential and
    # revokes the old one, on the record.
    admin = server.token("admin")
    r = server.request("POST", "/v1/devices/pi-1/allow-reenroll", admin, json={"reason": "new sd"})
    assert r.status_code == 200, r.text
    new = server.enroll("pi-1", "web", "canary")
    assert server.request("GET", "/v1/devices/pi-1/desired", cred).status_code == 401
    assert server.request("GET", "/v1/devices/pi-1/desired", new).status_code == 200
    audit = server.request("GET", "/v1/audit", viewer).json()["audit"]
    assert any(a["action"] == "device.reenroll" and a["target"] == "pi-1" for a in audit)

    # Everything survives a restart.
    server.restart()
    d = server.request("GET", "/v1/devices/pi-1", viewer).json()
    assert d["commit"] == head and len(d["history"]) == 1
    assert server.request("GET", "/v1/devices/pi-1/desired", new).status_code == 200


def test_canary_rollout_promotes_and_survives_restart(
    make_server: Any, db_url: str | None, repo: Any, clock: Any
) -> None:
    server = make_server(db_url)
    operator = server.token("operator")
    first = repo.git("rev-parse", "HEAD")
    creds = {
        name: server.enroll(name, "web", segment)
        for name, segment in (("c-1", "canary"), ("e-1", "early"), ("g-1", "general"))
    }
    for name, cred in creds.items():
        server.report(name, cred, status="healthy", commit=first)
    second = repo.commit({"roles/web/activate.sh": "#!/bin/sh\necho v2\n"}, "v2")

    # A commit the mirror has not fetched yet: starting the rollout fetches it.
    r = server.request(
        "POST",
        "/v1/rollouts",
        operator,
        json={"commit": second[:10], "strategy": "canary", "role": "web", "wait_seconds": 600},
    )
    assert r.status_code == 201, r.text
    rollout = r.json()
    assert rollout["commit"] == second and rollout["state"] == "running" and rollout["steps"] == 3
    rid = rollout["id"]

    d = server.desired("c-1", creds["c-1"])
    assert d["commit"] == second and d["why"] == "rollout"
    assert d["rollout"] == {"id": rid, "strategy": "canary", "options": {"segments": ["canary"]}}
    assert server.desired("e-1", creds["e-1"])["why"] == "hold"

    # Healthy canary, but the wait has not passed: no promotion.
    server.report("c-1", creds["c-1"], status="healthy", commit=second)
    server.tick()
    assert server.request("GET", f"/v1/rollouts/{rid}", operator).json()["step"] == 0
    clock.advance(601)
    server.report("c-1", creds["c-1"], status="healthy", commit=second)
    server.tick()
    ro = server.request("GET", f"/v1/rollouts/{rid}", operator).json()
    assert ro["step"] == 1 and ro["state"] == "running"
    assert ro["progress"][0] == {
        "step": 0,
        "options": {"segments": ["canary"]},
        "wait_seconds": 600.0,
        "targeted": 1,
        "online": 1,
        "updated": 1,
        "healthy": 1,
        "failed": 0,
        "failing": 0,
    }
    assert server.desired("e-1", creds["e-1"])["commit"] == second

    # The server restarts mid-rollout: step, decisions and statuses are all there.
    server.restart()
    ro = server.request("GET", f"/v1/rollouts/{rid}", operator).json()
    assert ro["step"] == 1 and [d["action"] for d in ro["decisions"]] == ["start", "promote"]
    assert server.desired("g-1", creds["g-1"])["why"] == "hold"

    clock.advance(601)
    server.report("e-1", creds["e-1"], status="healthy", commit=second)
    server.tick()
    clock.advance(601)
    for name, cred in creds.items():  # devices report every minute; these are the latest
        server.report(name, cred, status="healthy", commit=second)
    server.tick()
    ro = server.request("GET", f"/v1/rollouts/{rid}", operator).json()
    assert ro["state"] == "completed", ro
    status = server.request("GET", "/v1/fleet/status", operator).json()
    assert status["stable"] == {"web": second}
    assert status["commits"] == [{"commit": second, "devices": 3, "share": 1.0}]
    # With no rollout running, everyone runs the last one that finished.
    d = server.desired("g-1", creds["g-1"])
    assert d["commit"] == second and d["why"] == "stable"


def test_migrations_bring_an_older_database_up_to_date(db_url: str | None, tmp_path: Any) -> None:
    import sqlalchemy as sa

    from fleetcore.server.store import MIGRATIONS, Store, database_url

    url = database_url(tmp_path / "data", db_url)
    store = Store(url)
    assert store.schema_version() == len(MIGRATIONS)
    # Make it look like a database from before migrations 4 (rollouts.roles),
    # 5 (role_secrets), 6 (resumes), 7 (who created and revoked what), 8
    # (device labels), 9 (the branch a device's agent.toml follows), 11
    # (device metrics), 12 (safe-mode holds), 13 (device logs) and 14
    # (scoped enrollment tokens, pending devices, re-enrollment approvals,
    # device secrets).
    with store.begin() as conn:
        for column in ("segment", "max_uses", "uses", "require_approval"):
            conn.execute(sa.text(f"ALTER TABLE tokens DROP COLUMN {column}"))
        conn.execute(sa.text("ALTER TABLE devices DROP COLUMN pending"))
        conn.execute(sa.text("DROP TABLE device_secrets"))
        conn.execute(sa.text("DROP TABLE reenroll_approvals"))
        conn.execute(sa.text("ALTER TABLE rollouts DROP COLUMN roles"))
        conn.execute(sa.text("DROP TABLE role_secrets"))
        conn.execute(sa.text("ALTER TABLE device_policies DROP COLUMN resumes"))
        for column in ("created_by", "revoked_at", "revoked_by"):
            conn.execute(sa.text(f"ALTER TABLE tokens DROP COLUMN {column}"))
        conn.execute(sa.text("ALTER TABLE devices DROP COLUMN revoked_at"))
        conn.execute(sa.text("ALTER TABLE devices DROP COLUMN labels"))
        conn.execute(sa.text("ALTER TABLE devices DROP COLUMN branch"))
        conn.execute(sa.text("ALTER TABLE devices DROP COLUMN metrics"))
        conn.execute(sa.text("ALTER TABLE device_policies DROP COLUMN safe_mode_holds"))
        conn.execute(sa.text("DROP TABLE device_logs"))
        conn.execute(sa.text("DELETE FROM schema_migrations WHERE version >= 4"))
    store.close()
    store = Store(url)
    assert store.schema_version() == len(MIGRATIONS)
    with store.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("rollouts")}
        tables = set(sa.inspect(conn).get_table_names())
    assert "roles" in columns
    assert {"role_secrets", "device_logs"} <= tables
    with store.connect() as conn:
        policy_columns = {c["name"] for c in sa.inspect(conn).get_columns("device_policies")}
    assert {"resumes", "safe_mode_holds"} <= policy_columns
    with store.connect() as conn:
        token_columns = {c["name"] for c in sa.inspect(conn).get_columns("tokens")}
        device_columns = {c["name"] for c in sa.inspect(conn).get_columns("devices")}
    assert {"created_by", "revoked_at", "revoked_by"} <= token_columns
    assert {"revoked_at", "labels", "branch", "metrics", "pending"} <= device_columns
    assert {"segment", "max_uses", "uses", "require_approval"} <= token_columns
    with store.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"device_secrets", "reenroll_approvals"} <= tables
    # Opening an up-to-date database changes nothing.
    store.close()
    assert Store(url).schema_version() == len(MIGRATIONS)


def test_an_etag_answered_from_memory_never_hides_a_change(
    make_server: Any, db_url: str | None, repo: Any
) -> None:
    server = make_server(db_url)
    admin = server.token("admin")
    cred = server.enroll("pi-1", "web", "canary")
    head = repo.head()
    etag = server.request("GET", "/v1/devices/pi-1/desired", cred).headers["etag"]
    for _ in range(3):  # the first 304 reads the database; the next ones come from memory
        r = server.request("GET", "/v1/devices/pi-1/desired", cred, headers={"If-None-Match": etag})
        assert r.status_code == 304
    r = server.request("PUT", "/v1/fleet/pin", admin, json={"commit": head, "reason": "x"})
    assert r.status_code == 200
    # At once, not half a second later: the change was made through this server.
    r = server.request("GET", "/v1/devices/pi-1/desired", cred, headers={"If-None-Match": etag})
    assert r.status_code == 200
    assert (r.json()["commit"], r.json()["why"]) == (head, "pin")
    assert r.headers["etag"] != etag


def test_reports_arriving_together_are_each_stored(make_server: Any, db_url: str | None) -> None:
    """Concurrent reports share transactions (group commit): each device's
    own values land on its own row, whatever else was in the batch, and a
    refused report does not take the others down with it."""
    from concurrent.futures import ThreadPoolExecutor

    server = make_server(db_url)
    viewer = server.token("viewer")
    devices = {f"pi-{i}": server.enroll(f"pi-{i}") for i in range(12)}

    def report(device_id: str, credential: str) -> list[int]:
        codes = []
        for n in range(5):
            # Different keys from report to report: different statements in one batch.
            body: dict[str, Any] = {"status": "healthy", "uptime_seconds": n}
            if n % 2:
                body["current_error"] = f"{device_id} error {n}"
            else:
                body["cpu_percent"] = int(device_id.split("-")[1])  # an int, stored as float
            r = server.request("POST", f"/v1/devices/{device_id}/status", credential, json=body)
            codes.append(r.status_code)
        bad = server.request(
            "POST", f"/v1/devices/{device_id}/status", credential, json={"status": "sunny"}
        )
        codes.append(bad.status_code)
        return codes

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(report, devices, devices.values()))
    assert all(codes == [204] * 5 + [400] for codes in results)

    for device_id in devices:
        d = server.request("GET", f"/v1/devices/{device_id}", viewer).json()
        assert d["uptime_seconds"] == 4 and d["status"] == "healthy"
        assert d["cpu_percent"] == float(device_id.split("-")[1])
        assert d["current_error"] == f"{device_id} error 3"
