"""Blast-radius protection on a real server: the tiers and their response,
scopes (a tiny role, a role failing inside a large fleet), incidents, and
halt-all / resume-all. The clock is the test's; devices and their failures
are written the way the device API writes them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fleetcore.server import schema as t
from fleetcore.testing.services import missing


def _devices(server: Any, role: str, count: int, *, prefix: str | None = None, **row: Any) -> list:
    now = server.ctl.ts()
    ids = [f"{prefix or role}-{i:03d}" for i in range(count)]
    with server.ctl.store.begin() as conn:
        conn.execute(
            t.devices.insert(),
            [
                {
                    "device_id": d,
                    "role": role,
                    "segment": "general",
                    "credential_hash": f"hash-{d}",
                    "enrolled_at": now,
                    "last_seen": now,
                    "status": "healthy",
                    **row,
                }
                for d in ids
            ],
        )
    return ids


def _fail(
    server: Any, ids: list[str], commit: str, *, safe_mode: bool = False, **labels: str
) -> None:
    """Each device rolled back from ``commit`` just now (as its history says)."""
    now = server.ctl.ts()
    with server.ctl.store.begin() as conn:
        for d in ids:
            conn.execute(
                t.history.insert().values(
                    device_id=d,
                    timestamp=now,
                    from_commit=None,
                    to_commit=commit,
                    result="rollback",
                    reason="health: container exited with 137",
                    received_at=now,
                )
            )
            conn.execute(
                t.devices.update()
                .where(t.devices.c.device_id == d)
                .values(status="safe_mode" if safe_mode else "failed", last_seen=now)
            )


def _stable(server: Any, role: str, commit: str) -> None:
    with server.ctl.store.begin() as conn:
        conn.execute(t.stables.insert().values(role=role, commit=commit, at=server.ctl.ts() - 60))


def _locks(server: Any) -> dict[str, tuple[str, str, str]]:
    with server.ctl.store.connect() as conn:
        return {
            p.device_id: (p.lock_commit, p.locked_by, p.lock_reason)
            for p in conn.execute(
                sa.select(t.device_policies).where(t.device_policies.c.lock_commit.is_not(None))
            )
        }


def test_tiers_hold_then_halt_then_pin_and_resume_all_lifts(
    make_server: Any, db_url: str | None, repo: Any, clock: Any
) -> None:
    server = make_server(db_url)
    admin = server.token("admin")
    first = repo.git("rev-parse", "HEAD")
    bad = repo.commit({"roles/web/activate.sh": "#!/bin/sh\nexit 1\n"}, "broken")
    web = _devices(server, "web", 40, commit=first)
    _stable(server, "web", first)
    r = server.request(
        "PUT", "/v1/fleet/blast-radius", admin, json={"min_devices": 2, "reason": "small fleet"}
    )
    assert r.status_code == 200 and r.json()["min_devices"] == 2
    r = server.request(
        "POST",
        "/v1/rollouts",
        admin,
        json={
            "commit": bad,
            "strategy": "percentage",
            "role": "web",
            "threshold": 0.9,  # the rollout's own gate stays out of the way
            "steps": [{"options": {"percent": 100}, "wait_seconds": 60}],
        },
    )
    rid = r.json()["id"]

    # 3 of 40 (7.5%): warning. The rollout holds: its wait passes, no promotion.
    _fail(server, web[:3], bad)
    server.tick()
    incidents = server.request("GET", "/v1/incidents", admin).json()["incidents"]
    assert [(i["level"], i["state"]) for i in incidents] == [("warning", "open")]
    clock.advance(120)
    server.tick()
    ro = server.request("GET", f"/v1/rollouts/{rid}", admin).json()
    assert ro["state"] == "running"
    assert any(d["action"] == "hold" for d in ro["decisions"])

    # 5 of 40 (12.5%): critical. The rollout of the suspected commit halts.
    _fail(server, web[3:5], bad)
    server.tick()
    ro = server.request("GET", f"/v1/rollouts/{rid}", admin).json()
    assert ro["state"] == "halted" and ro["reason"].startswith("blast radius: ")

    # 9 of 40 (22.5%): emergency. Every device of web is pinned to the last
    # good commit by blast-radius; the device in safe mode is released.
    _fail(server, web[5:9], bad)
    _fail(server, [web[9]], bad, safe_mode=True)
    server.tick()
    incident = server.request("GET", "/v1/incidents", admin).json()["incidents"][0]
    assert incident["level"] == "emergency" and incident["state"] == "open"
    assert incident["commit"] == bad and incident["roles"] == ["web"]
    assert incident["failed_devices"] == sorted(web[:10])
    assert incident["failure_rate"] >= 0.2
    assert incident["pattern"]["same_role"] == "web"
    assert [a["action"] for a in incident["actions"]] == [
        "open",
        "hold",
        "alert",
        "escalate",
        "halt",
        "alert",
        "escalate",
        "halt",
        "pin",
        "rollback",
        "alert",
    ]
    assert all(a["by"] == "blast-radius" and a["at"] for a in incident["actions"])
    assert incident == server.request("GET", f"/v1/incidents/{incident['id']}", admin).json()
    locks = _locks(server)
    assert set(locks) == set(web)
    assert {(c, by) for c, by, _ in locks.values()} == {(first, "blast-radius")}
    assert all(reason.startswith("blast radius: ") for _, _, reason in locks.values())
    with server.ctl.store.connect() as conn:
        resumes = {p.device_id: p.resumes for p in conn.execute(sa.select(t.device_policies))}
    assert resumes[web[9]] == 1 and resumes[web[0]] == 0
    _, desired = server.ctl.desired(web[0])
    assert (desired["commit"], desired["why"]) == (first, "lock")
    metrics = server.request("GET", "/metrics").text
    assert 'fleetcore_incident_open{level="emergency"} 1.0' in metrics
    assert 'fleetcore_incident_open{level="warning"} 0.0' in metrics
    status = server.request("GET", "/v1/fleet/status", admin).json()["blast_radius"]
    assert status["incident"]["id"] == incident["id"]
    assert (status["warning"], status["min_devices"]) == (0.05, 2)

    # An operator's lock is theirs: resume-all lifts only the emergency's.
    server.request("PUT", f"/v1/devices/{web[20]}/lock", admin, json={"commit": first})
    viewer = server.token("viewer")
    assert server.request("POST", "/v1/fleet/resume-all", viewer, json={}).status_code == 403
    r = server.request("POST", "/v1/fleet/resume-all", admin, json={"reason": "fixed in v3"})
    assert r.status_code == 200, r.text
    assert r.json() == {"lifted": 39, "resolved": [incident["id"]]}
    assert set(_locks(server)) == {web[20]}
    server.tick()  # the failures before the resume were dealt with
    incidents = server.request("GET", "/v1/incidents", admin).json()["incidents"]
    assert [(i["level"], i["state"]) for i in incidents] == [("emergency", "resolved")]
    assert incidents[0]["actions"][-1]["action"] == "resume"
    audit = [a["action"] for a in server.request("GET", "/v1/audit", admin).json()["audit"]]
    assert "fleet.resume_all" in audit and "incident.pin" in audit


def test_scopes_a_tiny_role_trips_nothing_a_failing_role_cannot_hide(
    server: Any, repo: Any
) -> None:
    admin = server.token("admin")
    first = repo.git("rev-parse", "HEAD")
    bad = repo.commit({"roles/cam/activate.sh": "#!/bin/sh\nexit 1\n"}, "broken cam")
    web = _devices(server, "web", 300, commit=first, labels=json.dumps({"hardware": "pi4"}))
    tiny = _devices(server, "tiny", 2, commit=first)
    cam = _devices(server, "cam", 6, commit=first, labels=json.dumps({"hardware": "pi3"}))
    for role in ("web", "tiny", "cam"):
        _stable(server, role, first)

    # One of the two devices of a tiny role: 50% of it, but no evidence.
    _fail(server, tiny[:1], bad)
    server.tick()
    assert server.request("GET", "/v1/incidents", admin).json()["incidents"] == []

    # Every camera fails: 2% of the fleet, 100% of the role -> emergency for cam only.
    _fail(server, cam, bad)
    server.tick()
    (incident,) = server.request("GET", "/v1/incidents", admin).json()["incidents"]
    assert incident["level"] == "emergency"
    assert "role cam" in incident["scope"]
    assert incident["roles"] == ["cam", "tiny"]
    locks = _locks(server)
    assert set(cam) <= set(locks) and not set(web) & set(locks)


def test_a_role_without_a_finished_rollout_goes_back_to_what_its_healthy_devices_run(
    server: Any, repo: Any
) -> None:
    admin = server.token("admin")
    first = repo.git("rev-parse", "HEAD")
    bad = repo.commit({"roles/web/activate.sh": "#!/bin/sh\nexit 1\n"}, "broken")
    web = _devices(server, "web", 20, commit=first)
    _fail(server, web[:6], bad)  # 30%, and no rollout of web ever finished
    server.tick()
    (incident,) = server.request("GET", "/v1/incidents", admin).json()["incidents"]
    pin = next(a for a in incident["actions"] if a["action"] == "pin")
    assert pin["commit"] == first and "the commit its healthy devices run" in pin["detail"]
    assert {c for c, _, _ in _locks(server).values()} == {first}


def test_a_quiet_window_resolves_a_warning_and_halt_all_is_an_emergency(
    server: Any, repo: Any, clock: Any
) -> None:
    admin = server.token("admin")
    first = repo.git("rev-parse", "HEAD")
    bad = repo.commit({"roles/web/activate.sh": "#!/bin/sh\nexit 1\n"}, "broken")
    web = _devices(server, "web", 100, commit=first)
    _stable(server, "web", first)
    _fail(server, web[:6], bad)  # 6%: warning
    server.tick()
    clock.advance(301)  # the failures leave the window, and a whole window passes
    server.tick()
    (incident,) = server.request("GET", "/v1/incidents", admin).json()["incidents"]
    assert (incident["level"], incident["state"]) == ("warning", "resolved")
    assert incident["actions"][-1]["action"] == "resolve"

    r = server.request("POST", "/v1/fleet/halt-all", admin, json={"reason": ""})
    assert r.status_code == 400 and r.json()["field"] == "reason"
    r = server.request(
        "POST", "/v1/fleet/halt-all", admin, json={"reason": "smoke", "rollback": True}
    )
    assert r.status_code == 200, r.text
    halted = r.json()
    assert (halted["level"], halted["state"], halted["opened_by"]) == (
        "emergency",
        "open",
        "test-admin",
    )
    assert {a["action"] for a in halted["actions"]} >= {"open", "halt", "pin"}
    assert set(_locks(server)) == set(web)


# -- the dashboard -----------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright")
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        missing("Chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=path, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        yield b
        b.close()


def test_the_dashboard_shows_the_emergency_and_its_controls_work(
    browser: Any, server: Any, repo: Any, tmp_path: Path
) -> None:
    admin = server.token("admin")
    first = repo.git("rev-parse", "HEAD")
    bad = repo.commit({"roles/web/activate.sh": "#!/bin/sh\nexit 1\n"}, "broken")
    _devices(server, "web", 30, commit=first, labels=json.dumps({"hardware": "pi4"}))
    cam = _devices(server, "cam", 10, commit=first, labels=json.dumps({"hardware": "pi3"}))
    _stable(server, "web", first)
    _stable(server, "cam", first)
    _fail(server, cam[:9], bad)
    server.tick()

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url + "/login")
    page.fill("input[name=token]", admin)
    page.click("button[type=submit]")
    panel = page.inner_text("#emergency")
    assert "EMERGENCY HALT ACTIVE" in panel
    assert "9 of 10 devices of role cam failing" in page.inner_text("#em-reason")
    assert page.inner_text("#em-affected") == "9"
    assert page.inner_text("#em-healthy") == "31"
    assert "seconds" in page.inner_text("#em-since")
    page.screenshot(path=str(tmp_path / "emergency-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(tmp_path / "emergency-390.png"), full_page=True)
    # Nothing wider than a phone: the panel and the controls wrap.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    page.set_viewport_size({"width": 1280, "height": 900})
    page.click("#emergency a")
    page.wait_for_selector("#actions")
    assert "pin" in page.inner_text("#actions")
    assert page.inner_text("#pattern")
    page.screenshot(path=str(tmp_path / "incident-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(tmp_path / "incident-390.png"), full_page=True)
    page.click(f"#failed >> text={cam[0]}")
    page.wait_for_selector("#device")
    assert page.url.endswith(f"/devices/{cam[0]}")

    # RESUME NORMAL asks why, then lifts the emergency's pins.
    page.goto(server.url + "/")
    page.fill("form[action='/fleet/resume-all'] input[name=reason]", "fixed in v3")
    page.click("form[action='/fleet/resume-all'] button")
    page.wait_for_selector("#controls")
    assert page.query_selector("#emergency") is None
    assert _locks(server) == {}
    # HALT ALL is an emergency an operator declared.
    page.fill("form[action='/fleet/halt-all'] input[name=reason]", "smoke from the rack")
    page.click("form[action='/fleet/halt-all'] button")
    page.wait_for_selector("#emergency")
    assert "halted by test-admin: smoke from the rack" in page.inner_text("#em-reason")
    page.close()
    if os.environ.get("FLEETCORE_SCREENSHOTS"):
        for shot in tmp_path.glob("*.png"):
            shutil.copy(shot, os.environ["FLEETCORE_SCREENSHOTS"])

    # A viewer sees the panel but no controls, and cannot post them.
    viewer = server.token("viewer")
    r = server.request("POST", "/fleet/halt-all", headers={"Cookie": f"fleetcore_token={viewer}"},
                       data={"reason": "x"}, allow_redirects=False)  # fmt: skip
    assert r.status_code == 403


def _cli(server: Any, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetcore", "fleet", "--server", server.url, "--token", token,
         *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_the_fleet_cli_sets_thresholds_lists_incidents_halts_and_resumes(
    server: Any, repo: Any
) -> None:
    admin, operator = server.token("admin"), server.token("operator")
    first = repo.git("rev-parse", "HEAD")
    web = _devices(server, "web", 20, commit=first)
    _stable(server, "web", first)

    r = _cli(server, admin, "blast-radius", "--warning", "0.5", "--critical", "0.2")
    assert r.returncode == 2 and "thresholds must rise" in r.stderr
    r = _cli(server, operator, "blast-radius", "--window", "2m")
    assert r.returncode == 1, r.stderr  # an operator may read them, not set them
    r = _cli(server, admin, "blast-radius", "--window", "2m", "--min-devices", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert (json.loads(r.stdout)["window_seconds"], json.loads(r.stdout)["min_devices"]) == (
        120.0,
        3,
    )
    r = _cli(server, operator, "blast-radius")
    assert "within 120s (at least 3 devices)" in r.stdout and "now: normal" in r.stdout
    assert _cli(server, operator, "incidents").stdout.strip() == "no incidents"

    _fail(server, web[:5], first)  # 25% of web
    server.tick()
    r = _cli(server, operator, "incidents")
    assert r.returncode == 0 and "#1 EMERGENCY open" in r.stdout and "failing 5 (25%)" in r.stdout
    r = _cli(server, operator, "incident", "1")
    assert "same_role: web" in r.stdout and "pin-skipped by blast-radius" in r.stdout
    assert "INCIDENT 1 EMERGENCY" in _cli(server, operator, "status").stdout
    assert _cli(server, operator, "incident", "9").returncode == 2
    assert _cli(server, operator, "halt-all", "--reason", "x").returncode == 1

    r = _cli(server, admin, "resume-all", "--reason", "a false alarm")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "0 emergency pin(s) lifted; incidents resolved: 1"
    r = _cli(server, admin, "halt-all", "--reason", "smoke")
    assert r.returncode == 0 and r.stdout.strip() == "fleet halted: incident 2 (emergency)"
