"""The dashboard's views with real data in a real browser (the system's
Chromium): the overview's shares and last hour, the device list's filters
and pages, a device's page, a rollout's steps, and the pages refreshing
themselves. Screenshots at 1280 and 390 pixels are saved as artifacts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fleetcore.server.dashboard import ago, filter_devices, page_of, step_options, uptime
from fleetcore.server.samples import Samples, sparkline

WIDTHS = {"desktop": 1280, "phone": 390}


def _shots(page: Any, artifacts: Path, name: str) -> None:
    for label, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(artifacts / f"{name}-{label}.png"), full_page=True)
        # Nothing wider than the screen but the tables' own scrolling boxes.
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} at {width}px is {overflow}px too wide"
    page.set_viewport_size({"width": 1280, "height": 900})


def _login(chromium: Any, server: Any, token: str) -> Any:
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url + "/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#total")
    return page


def _history(server: Any, device: str, cred: str, **entry: Any) -> None:
    r = server.request("POST", f"/v1/devices/{device}/history", cred, json={"entries": [entry]})
    assert r.status_code in (200, 204), r.text


def _fleet(server: Any, repo: Any, clock: Any) -> dict[str, str]:
    """60 devices: 54 healthy web and cam devices, 2 degraded, 2 in safe mode,
    2 that will be offline; a few updates in the last hour."""
    head = repo.git("rev-parse", "HEAD")
    creds: dict[str, str] = {}
    for i in range(60):
        role = "web" if i % 3 else "cam"
        segment = "canary" if i < 6 else "general"
        hw = "pi3" if i % 4 == 0 else "pi4"
        name = f"{role}-{i:03d}"
        creds[name] = server.enroll(name, role, segment, labels={"hardware": hw})
    names = sorted(creds)
    for i, name in enumerate(names):
        status = "healthy"
        if i in (1, 2):
            status = "degraded"
        elif i in (3, 4):
            status = "safe_mode"
        server.report(
            name,
            creds[name],
            status=status,
            commit=head,
            cpu_percent=10.0 + i,
            memory_percent=40.0,
            disk_percent=55.5,
            uptime_seconds=3 * 86400 + 4 * 3600 + 120,
        )
    at = (clock.now() - dt.timedelta(minutes=20)).isoformat()
    _history(server, names[0], creds[names[0]], timestamp=at, to_commit=head, result="success",
             duration_seconds=40)  # fmt: skip
    _history(server, names[5], creds[names[5]], timestamp=at, to_commit=head, result="success",
             duration_seconds=44)  # fmt: skip
    _history(server, names[3], creds[names[3]], timestamp=at, to_commit=head, result="rollback",
             duration_seconds=90, reason="health checks failed")  # fmt: skip
    return creds


def test_the_overview_shows_shares_updates_and_pages_of_devices(
    chromium: Any, server: Any, repo: Any, clock: Any, artifacts: Path
) -> None:
    creds = _fleet(server, repo, clock)
    # Two devices fall silent: the engine marks them offline.
    clock.advance(60)
    for i, name in enumerate(sorted(creds)):
        if i not in (5, 6):
            server.report(name, creds[name], status=server.ctl.device(name)["status"])
    clock.advance(150)
    server.tick()
    page = _login(chromium, server, server.token("viewer"))
    cards = {
        el.get_attribute("class").split("status-")[-1]: el.inner_text()
        for el in page.locator("#summary .card").all()
    }
    assert cards["total"].split() == ["60", "devices"]
    assert cards["online"].split() == ["58", "online", "96.7%"]
    assert cards["healthy"].split() == ["54", "healthy", "90.0%"]
    assert cards["degraded"].split() == ["2", "degraded", "3.3%"]
    assert cards["safe_mode"].split() == ["2", "safe", "mode", "3.3%"]
    assert cards["offline"].split() == ["2", "offline", "3.3%"]
    updates = page.inner_text("#updates")
    assert "Updates in the last hour: 3" in updates
    assert "Failed updates: 1" in updates
    assert "Average update time: 42s" in updates
    assert "100%" in page.inner_text("#commits")
    # 50 devices a page.
    assert page.locator("#devices tr").count() == 51
    assert "1\u201350 of 60 devices" in page.inner_text("#pager")  # an en dash
    _shots(page, artifacts, "overview")
    page.click("#pager a[rel=next]")
    page.wait_for_url("**page=2")
    assert page.locator("#devices tr").count() == 11
    # Filters: role, status, label, a search; they combine and survive paging.
    page.select_option("select[name=role]", "cam")
    page.fill("input[name=label]", "hardware=pi3")
    page.click("#filters button")
    page.wait_for_url("**role=cam**")
    shown = [r.inner_text().split()[0] for r in page.locator("#devices tr").all()[1:]]
    expected = [
        d["device_id"]
        for d in server.ctl.devices()
        if d["role"] == "cam" and d["labels"]["hardware"] == "pi3"
    ]
    assert shown == expected and shown
    page.goto(server.url + "/?status=safe_mode")
    assert page.locator("#devices td.status-safe_mode").count() == 2
    page.goto(server.url + "/?q=web-00")
    assert [r.inner_text().split()[0] for r in page.locator("#devices tr").all()[1:]] == [
        "web-001",
        "web-002",
        "web-004",
        "web-005",
        "web-007",
        "web-008",
    ]
    _shots(page, artifacts, "overview-filtered")
    page.close()


def test_a_device_page_in_words_with_sparklines_and_live_updates(
    chromium: Any, server: Any, repo: Any, clock: Any, artifacts: Path
) -> None:
    head = repo.git("rev-parse", "HEAD")
    cred = server.enroll("cam-042", "cam", "canary", labels={"hardware": "pi4", "site": "north"})
    figures = dict(memory_percent=41.0, disk_percent=63.2, uptime_seconds=3 * 86400 + 4 * 3600 + 60)
    for minute, cpu in enumerate((12.0, 30.0, 55.0, 20.0)):
        server.report("cam-042", cred, status="healthy", commit=head, cpu_percent=cpu,
                      network_receive_bytes_per_second=2048.0 * (minute + 1),
                      network_transmit_bytes_per_second=512.0, **figures)  # fmt: skip
        clock.advance(60)
    two_minutes_ago = (clock.now() - dt.timedelta(minutes=2)).isoformat()
    _history(server, "cam-042", cred, timestamp=two_minutes_ago, from_commit="a" * 40,
             to_commit=head, result="success", duration_seconds=42)  # fmt: skip
    server.report("cam-042", cred, status="healthy", commit=head, cpu_percent=25.0,
                  last_update=two_minutes_ago,
                  last_update_result="success", **figures)  # fmt: skip
    clock.advance(30)

    page = _login(chromium, server, server.token("operator"))
    page.goto(server.url + "/devices/cam-042")
    assert page.inner_text("#last-seen td") == "30 seconds ago"
    assert page.get_attribute("#last-seen time", "title") == "2026-01-01 12:04:00 UTC"
    assert page.inner_text("#uptime td") == "3 days 4 hours"
    assert page.inner_text("#last-update td") == "2 minutes ago: success"
    assert page.inner_text("#res-cpu td").startswith("25.0%")
    assert page.inner_text("#res-network td").startswith("↓ 8.2 kB/s · ↑ 512 B/s")
    # Five reports a minute apart: five points in the last hour's CPU line.
    points = page.get_attribute("#res-cpu polyline", "points")
    assert len(points.split()) == 5
    assert "pi4" in page.inner_text("#labels") and "site=north" in page.inner_text("#labels")
    assert "42s" in page.inner_text("#history")
    _shots(page, artifacts, "device")
    # The page follows the device without a reload.
    page.evaluate("window.__marker = 1")
    server.report("cam-042", cred, status="degraded", current_error="camera not found")
    page.wait_for_function(
        "document.querySelector('#device').innerText.includes('camera not found')", timeout=30000
    )
    assert page.evaluate("window.__marker") == 1  # the same page: not reloaded
    page.close()


def test_a_rollout_page_says_each_step_in_words(
    chromium: Any, server: Any, repo: Any, artifacts: Path
) -> None:
    head = repo.git("rev-parse", "HEAD")
    for i in range(4):
        cred = server.enroll(f"web-{i}", "web", "canary" if i == 0 else "general")
        server.report(f"web-{i}", cred, status="healthy", commit=head)
    operator = server.token("operator")
    body = {
        "commit": head,
        "strategy": "percentage",
        "role": "web",
        "steps": [
            {"options": {"percent": 25}, "wait_seconds": 60},
            {"options": {"percent": 100}, "wait_seconds": 0},
        ],
    }
    rid = server.request("POST", "/v1/rollouts", operator, json=body).json()["id"]
    page = _login(chromium, server, operator)
    page.goto(f"{server.url}/rollouts/{rid}")
    rows = [r.inner_text().split("\t") for r in page.locator("#steps tr").all()[1:]]
    assert [r[:3] for r in rows] == [
        ["1", "25% of devices", "1m"],
        ["2", "100% of devices", "0s"],
    ]
    assert rows[1][3] == "not reached"
    assert page.locator("#steps tr.current td").first.inner_text() == "1"
    assert page.locator("#steps .bar").count() == 1
    page.click("button:has-text('Halt')")
    page.wait_for_selector("#state.state-halted")
    decisions = [r.inner_text().split("\t") for r in page.locator("#decisions tr").all()[1:]]
    assert [d[1:3] for d in decisions] == [
        ["start", "1"],
        ["halt", "1"],
    ]  # as the steps table numbers them
    decision = decisions[-1]
    assert decision[0] in ("just now", "0 seconds ago")
    _shots(page, artifacts, "rollout")
    page.close()


# -- the pieces, without a browser ------------------------------------------------------


def test_relative_times_uptimes_and_step_options() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert ago((now - dt.timedelta(seconds=30)).isoformat(), now) == "30 seconds ago"
    assert ago((now - dt.timedelta(minutes=1)).isoformat(), now) == "1 minute ago"
    assert ago((now - dt.timedelta(days=2, hours=3)).isoformat(), now) == "2 days ago"
    assert ago((now + dt.timedelta(hours=4)).isoformat(), now) == "in 4 hours"
    assert ago(None, now) == "never"
    assert uptime(493.0) == "8 minutes"
    assert uptime(5 * 3600 + 12 * 60) == "5 hours 12 minutes"
    assert uptime(86400 + 3600) == "1 day 1 hour"
    assert step_options({"percent": 10}) == "10% of devices"
    assert step_options({"segments": ["canary", "early"]}) == "segments canary, early"
    assert step_options({}) == "every device"


def test_filters_and_pages() -> None:
    devices = [
        {"device_id": f"d{i}", "role": "web", "segment": "general", "status": "healthy",
         "labels": {"hardware": "pi4" if i % 2 else "pi3"}, "hostname": None, "commit": None}
        for i in range(120)
    ]  # fmt: skip
    assert len(filter_devices(devices, {"label": "hardware=pi3"})) == 60
    assert len(filter_devices(devices, {"label": "hardware"})) == 120
    assert len(filter_devices(devices, {"label": "site"})) == 0
    assert [d["device_id"] for d in filter_devices(devices, {"q": "d11"})][:2] == ["d11", "d110"]
    page = page_of(devices, "3")
    assert (page["number"], page["pages"], page["first"], page["last"]) == (3, 3, 101, 120)
    assert page_of(devices, "99")["number"] == 3 and page_of(devices, "x")["number"] == 1
    assert page_of([], None)["first"] == 0


def test_samples_are_bounded_and_spaced() -> None:
    samples = Samples(keep=3, spacing=55)
    for minute in range(10):
        samples.add("pi-1", minute * 60.0, (float(minute), 1.0, 2.0, None, None))
        samples.add("pi-1", minute * 60.0 + 10, (99.0, 1.0, 2.0, None, None))  # too soon
    cpu = samples.series("pi-1", since=0)["cpu"]
    assert cpu == [(420.0, 7.0), (480.0, 8.0), (540.0, 9.0)]
    assert samples.series("pi-1", since=500)["cpu"] == [(540.0, 9.0)]
    assert samples.series("pi-1", since=0)["receive"] == []
    assert sparkline([(0.0, 50.0), (60.0, 100.0)], 0, 60, top=100, width=60, height=22) == (
        "0.0,11.0 60.0,1.0"
    )


def test_one_sample_still_draws_a_line() -> None:
    assert sparkline([(60.0, 50.0)], 0, 60, top=100, width=60, height=22) == "52.0,11.0 60.0,11.0"
