"""The dashboard in a real browser (the system's Chromium through playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from fleetcore.testing.services import missing

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright")
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path is None:
        missing("Chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=ARGS)
        yield b
        b.close()


def test_dashboard_shows_the_fleet_and_halts_a_rollout(
    browser: Any, server: Any, repo: Any, tmp_path: Path
) -> None:
    head = repo.git("rev-parse", "HEAD")
    creds = {
        "cam-1": server.enroll("cam-1", "cam", "canary"),
        "web-1": server.enroll("web-1", "web", "canary"),
        "web-2": server.enroll("web-2", "web", "general"),
    }
    server.report("cam-1", creds["cam-1"], status="healthy", commit=head)
    server.report("web-1", creds["web-1"], status="healthy", commit=head)
    server.report("web-2", creds["web-2"], status="failed", current_error="container exited")
    operator = server.token("operator")
    r = server.request(
        "POST", "/v1/rollouts", operator, json={"commit": head, "strategy": "canary", "role": "web"}
    )
    rid = r.json()["id"]

    page = browser.new_page()
    page.goto(server.url + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=token]", "fco_wrong")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "That token is not valid."

    page.fill("input[name=token]", operator)
    page.click("button[type=submit]")
    page.wait_for_selector("#total")
    assert page.inner_text("#total") == "3"
    assert page.inner_text("#online") == "3"
    assert "failed" in page.inner_text(".cards")
    commits = page.inner_text("#commits")
    assert head[:12] in commits and "67%" in commits
    rollouts = page.inner_text("#rollouts")
    assert f"#{rid}" in rollouts and "running" in rollouts and "1/1 updated" in rollouts
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

    page.click("text=web-2")
    page.wait_for_selector("#device")
    assert "container exited" in page.inner_text("#device")

    page.goto(f"{server.url}/rollouts/{rid}")
    assert page.inner_text("#state") == "running"
    page.click("button:has-text('Halt')")
    page.wait_for_selector("#state.state-halted")
    assert "halted by test-operator" in page.inner_text("#reason")
    assert page.locator("button:has-text('Resume')").is_visible()
    page.screenshot(path=str(tmp_path / "rollout.png"), full_page=True)
    page.click("button:has-text('Resume')")
    page.wait_for_selector("#state.state-running")
    decisions = page.inner_text("#decisions")
    assert "halt" in decisions and "resume" in decisions

    # A viewer sees the rollout but no buttons.
    viewer_page = browser.new_page()
    viewer_page.goto(server.url + "/login")
    viewer_page.fill("input[name=token]", server.token("viewer"))
    viewer_page.click("button[type=submit]")
    viewer_page.wait_for_selector("#total")
    viewer_page.goto(f"{server.url}/rollouts/{rid}")
    assert viewer_page.inner_text("#state") == "running"
    assert viewer_page.locator("button").count() == 0
    viewer_page.close()
    page.close()


def _login(browser: Any, server: Any, token: str) -> Any:
    page = browser.new_page()
    page.goto(server.url + "/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#total")
    return page


def _forge(page: Any, path: str, fields: dict[str, str]) -> int:
    """POST a form the page does not offer (or without what the browser
    would insist on), from the logged-in page, as a hand-edited page would;
    the status of the page it lands on."""
    with page.expect_navigation() as navigation:
        page.evaluate(
            """([path, fields]) => {
                const form = document.createElement("form");
                form.method = "post";
                form.action = path;
                for (const [name, value] of Object.entries(fields)) {
                    const input = document.createElement("input");
                    input.name = name;
                    input.value = value;
                    form.appendChild(input);
                }
                document.body.appendChild(form);
                form.submit();
            }""",
            [path, fields],
        )
    status: int = navigation.value.status
    return status


def test_an_admin_rolls_the_fleet_back_and_unpins_from_the_overview(
    browser: Any, server: Any, repo: Any, tmp_path: Path
) -> None:
    first = repo.git("rev-parse", "HEAD")
    second = repo.commit({"roles/web/activate.sh": "#!/bin/sh\necho v2\n"}, "v2")
    creds = {name: server.enroll(name, "web") for name in ("web-1", "web-2", "web-3")}
    server.report("web-1", creds["web-1"], status="healthy", commit=first)
    for name in ("web-2", "web-3"):
        server.report(name, creds[name], status="failed", commit=second)
    viewer = server.token("viewer")

    page = _login(browser, server, server.token("admin"))
    assert page.locator("#pin").count() == 0
    # A missing reason is refused with a page saying so, and nothing is pinned.
    assert _forge(page, "/fleet/pin", {"commit": first, "reason": " ", "expires": ""}) == 400
    assert "reason is required" in page.get_by_role("alert").inner_text()
    assert server.ctl.fleet_status()["pin"] is None

    page.goto(server.url + "/")
    row = page.locator("#commits tr", has_text=first[:12])
    row.locator("input[name=reason]").fill("v2 crashes on boot")
    row.locator("input[name=expires]").fill("4h")
    row.locator("button", has_text="Roll back fleet to this").click()
    page.wait_for_selector("#pin")
    shown = page.inner_text("#pin")
    assert first[:12] in shown and "by test-admin: v2 crashes on boot" in shown
    assert "Expires 2026-01-01T16:00:00+00:00" in shown  # the server's clock, plus 4h
    page.screenshot(path=str(tmp_path / "pinned.png"), full_page=True)
    for name, cred in creds.items():
        desired = server.desired(name, cred)
        assert (desired["commit"], desired["why"]) == (first, "pin")

    page.fill("#pin input[name=reason]", "v3 fixes the crash")
    page.click("#pin button:has-text('Unpin')")
    page.wait_for_selector("#pin", state="detached")
    assert server.desired("web-1", creds["web-1"])["why"] != "pin"
    audit = server.request("GET", "/v1/audit", viewer).json()["audit"]
    done = [(a["action"], a["actor"], a["reason"]) for a in audit]
    assert ("fleet.pin", "test-admin", "v2 crashes on boot") in done
    assert ("fleet.unpin", "test-admin", "v3 fixes the crash") in done
    page.close()


def test_viewers_and_operators_see_only_what_they_may_do(
    browser: Any, server: Any, repo: Any
) -> None:
    head = repo.git("rev-parse", "HEAD")
    cred = server.enroll("web-1", "web")
    server.report("web-1", cred, status="safe_mode", commit=head, mode="safe_mode")
    admin = server.token("admin")
    server.request("PUT", "/v1/fleet/pin", admin, json={"commit": head, "reason": "freeze"})

    viewer = _login(browser, server, server.token("viewer"))
    assert "Fleet pinned to" in viewer.inner_text("#pin")
    # Only the device list's filter: a search, no change.
    assert viewer.locator("form[method=post]").count() == 0
    viewer.goto(f"{server.url}/devices/web-1")
    assert viewer.locator("form").count() == 0
    # Forged forms are refused, and nothing changes.
    assert _forge(viewer, "/fleet/unpin", {"reason": "mine now"}) == 403
    assert "role admin" in viewer.get_by_role("alert").inner_text()
    assert _forge(viewer, "/fleet/pin", {"commit": head, "reason": "x"}) == 403
    assert _forge(viewer, "/devices/web-1/lock", {"commit": head, "reason": "x"}) == 403
    assert _forge(viewer, "/devices/web-1/resume", {"reason": "x"}) == 403
    assert _forge(viewer, "/devices/web-1/wake", {}) == 403
    assert _forge(viewer, "/devices/web-1/safe-mode", {"reason": "x"}) == 403
    assert server.ctl.fleet_status()["pin"]["reason"] == "freeze"
    device = server.ctl.device("web-1")
    assert device["policy"]["lock"] is None and device["desired"]["resume"] == 0
    viewer.close()

    # An operator may resume a device in safe mode, and nothing more here.
    operator = _login(browser, server, server.token("operator"))
    assert operator.locator("form[method=post]").count() == 0
    operator.goto(f"{server.url}/devices/web-1")
    assert operator.locator("button:has-text('Lock to this commit')").count() == 0
    operator.fill("#quick-actions input[name=reason]", "disk replaced")
    operator.click("button:has-text('Leave safe mode')")
    operator.wait_for_url(f"{server.url}/devices/web-1")
    assert server.desired("web-1", cred)["resume"] == 1
    assert _forge(operator, "/devices/web-1/lock", {"commit": head, "reason": "x"}) == 403
    assert server.ctl.device("web-1")["policy"]["lock"] is None
    operator.close()


def test_an_admin_locks_and_unlocks_a_device_from_its_page(
    browser: Any, server: Any, repo: Any, tmp_path: Path
) -> None:
    head = repo.git("rev-parse", "HEAD")
    cred = server.enroll("web-1", "web")
    server.report("web-1", cred, status="healthy", commit=head)

    page = _login(browser, server, server.token("admin"))
    page.goto(f"{server.url}/devices/web-1")
    assert page.locator("#lock").count() == 0
    assert _forge(page, "/devices/web-1/lock", {"commit": head, "reason": ""}) == 400
    assert "reason is required" in page.get_by_role("alert").inner_text()
    page.click("text=Back")
    page.wait_for_selector("#device")
    assert server.ctl.device("web-1")["policy"]["lock"] is None

    page.fill("#actions input[name=reason]", "debugging the camera")
    page.fill("#actions input[name=until]", "2h")
    page.click("button:has-text('Lock to this commit')")
    page.wait_for_selector("#lock")
    shown = page.inner_text("#lock")
    assert head[:12] in shown and "by test-admin: debugging the camera" in shown
    assert "until 2026-01-01T14:00:00+00:00" in shown
    assert (server.desired("web-1", cred)["commit"], server.desired("web-1", cred)["why"]) == (
        head,
        "lock",
    )
    page.screenshot(path=str(tmp_path / "locked.png"), full_page=True)

    page.fill("#actions input[name=reason]", "done")
    page.click("button:has-text('Unlock')")
    page.wait_for_selector("#lock", state="detached")
    assert server.desired("web-1", cred)["why"] != "lock"
    assert page.locator("button:has-text('Lock to this commit')").is_visible()
    page.close()


def test_labels_show_on_the_overview_and_the_device_page(
    browser: Any, server: Any, repo: Any, tmp_path: Path
) -> None:
    head = repo.git("rev-parse", "HEAD")
    many = {"hardware": "pi4", "network": "site-a", "environment": "prod", "rack": "r12-top"}
    creds = {
        "pi-1": server.enroll("pi-1", "web", labels=many),
        "pi-2": server.enroll("pi-2", "web", labels={"hardware": "pi3", "note": "<b>x</b>"}),
        "pi-3": server.enroll("pi-3", "cam"),
    }
    for name, cred in creds.items():
        server.report(name, cred, status="healthy", commit=head)

    page = _login(browser, server, server.token("viewer"))
    rows = {
        row.locator("td").first.inner_text(): row.locator("td.labels").inner_text().split()
        for row in page.locator("#devices tr:has(td)").all()
    }
    assert rows == {
        "pi-1": ["environment=prod", "hardware=pi4", "network=site-a", "rack=r12-top"],
        "pi-2": ["hardware=pi3", "note=<b>x</b>"],  # escaped, not markup
        "pi-3": [],
    }
    for width, height, name in ((1280, 900, "desktop"), (390, 844, "phone")):
        page.set_viewport_size({"width": width, "height": height})
        page.goto(server.url + "/")
        page.screenshot(path=str(tmp_path / f"overview-{name}.png"), full_page=True)
        page.goto(f"{server.url}/devices/pi-1")
        assert page.inner_text("#labels").split() == ["labels", *rows["pi-1"]]
        page.screenshot(path=str(tmp_path / f"device-{name}.png"), full_page=True)
    page.goto(f"{server.url}/devices/pi-3")
    assert page.inner_text("#labels").split() == ["labels", "none"]
    page.close()


def test_a_new_fleet_overview_names_the_first_rollout_to_start(
    browser: Any, server: Any, repo: Any
) -> None:
    page = _login(browser, server, server.token("viewer"))
    assert "no device has enrolled yet" in page.inner_text("#first-steps")
    server.enroll("web-1", "web")
    server.enroll("cam-1", "cam")
    page.goto(server.url + "/")
    steps = page.locator("#first-steps li").all_inner_texts()
    assert len(steps) == 2
    assert steps[0].startswith("no rollout has finished for role cam")
    assert "fleetcore fleet rollout start COMMIT --role web" in steps[1]
    operator = server.token("operator")
    head = repo.git("rev-parse", "HEAD")
    body = {"commit": head, "strategy": "percentage", "role": "web"}
    assert server.request("POST", "/v1/rollouts", operator, json=body).status_code == 201
    page.goto(server.url + "/")
    # A rollout under way is the first step taken: only cam is left.
    assert page.locator("#first-steps li").all_inner_texts() == [steps[0]]
    page.close()
