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
