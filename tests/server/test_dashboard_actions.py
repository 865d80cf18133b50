"""The device page's quick actions on a real agent (``fleetcore agent run``
against the server, its event stream open): Force update wakes it, Check
now runs a deep drift check whose verdict the page shows, View logs shows
the lines it uploads, Enter safe mode
stops its updates, Leave safe mode lets it go on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FLEETCORE = [sys.executable, "-m", "fleetcore"]
AGENT = """\
device_id = "pi-act"
role = "web"
segment = "general"
state_dir = "{state}"
update_interval = "1h"

[server]
url = "{url}"
report_interval = "1s"
# The server here runs on a test clock set months back: its answers would
# look stale to an agent on the wall clock.
max_desired_age = "1000d"

[throttle]
min_interval = "0s"
failure_pause = "0s"

[retry]
attempts = 1
backoff = "10ms"

[disk]
reserve = "1M"
"""


class Agent:
    """A real agent process and its stderr, line by line."""

    def __init__(self, root: Path, server: Any) -> None:
        root.mkdir(parents=True)
        self.config = root / "agent.toml"
        self.config.write_text(AGENT.format(state=root / "state", url=server.url))
        env = {**os.environ, "FLEETCORE_TEST_OUT": str(root / "running.txt")}
        enroll = subprocess.run(
            [*FLEETCORE, "agent", "enroll", "--config", str(self.config),
             "--enrollment-token", server.enrollment_token()],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert enroll.returncode == 0, enroll.stderr
        self.proc = subprocess.Popen(
            [*FLEETCORE, "agent", "run", "--config", str(self.config)],
            stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, after: int = 0, timeout: float = 60) -> int:
        """The index of the first line from ``after`` on that holds ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, line in enumerate(self.lines[after:], after):
                if text in line:
                    return i
            time.sleep(0.1)
        raise AssertionError(f"the agent did not log {text!r}:\n{''.join(self.lines)}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


@pytest.fixture
def server(make_server: Any) -> Any:
    # The page follows each action through its refreshes: every second here,
    # not every 10 s (`server run --page-refresh`).
    return make_server(page_refresh=1.0)


@pytest.fixture
def agent(tmp_path: Path, server: Any, repo: Any) -> Iterator[Agent]:
    # A release for it to run: the fleet repo's head, to every web device.
    body = {
        "commit": repo.git("rev-parse", "HEAD"),
        "strategy": "percentage",
        "role": "web",
        "steps": [{"options": {"percent": 100}, "wait_seconds": 0}],
    }
    r = server.request("POST", "/v1/rollouts", server.token("operator"), json=body)
    assert r.status_code == 201, r.text
    running = Agent(tmp_path / "agent", server)
    yield running
    running.stop()


def _status(server: Any) -> str:
    return str(server.ctl.device("pi-act")["status"])


def _wait(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_quick_actions_reach_a_real_agent(
    chromium: Any, server: Any, agent: Agent, artifacts: Path
) -> None:
    _wait("the agent did not get healthy", lambda: _status(server) == "healthy")
    # Its event stream is open: what the server sends reaches it.
    _wait("no event stream", lambda: server.ctl.hub.connected >= 1)
    first = len(agent.lines)
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url + "/login")
    page.fill("input[name=token]", server.token("operator"))
    page.click("button[type=submit]")
    page.goto(server.url + "/devices/pi-act")
    assert page.get_attribute("body", "data-refresh-ms") == "1000"

    # Force update: the agent runs a cycle now, not in an hour.
    page.click("#force-update")
    page.wait_for_url(server.url + "/devices/pi-act")
    agent.wait_for("woken by a server event", after=first)
    audit = server.request("GET", "/v1/audit", server.token("viewer")).json()["audit"]
    assert ("device.wake", "pi-act") in [(a["action"], a["target"]) for a in audit]

    # Check now: a deep drift check, whose verdict the page shows.
    assert "none yet" in page.inner_text("#drift")
    page.click("#check-now")
    page.wait_for_url(server.url + "/devices/pi-act")
    agent.wait_for("asked by the server for a deep drift check", after=first)
    page.wait_for_function(
        "document.querySelector('#drift').innerText.includes('clean')", timeout=30000
    )
    # (when: the agent's clock; this server's is a test clock, months behind)
    assert page.get_attribute("#drift time", "datetime")
    assert ": clean" in page.inner_text("#drift td")

    # View logs: the agent uploads its recent lines, the page shows them.
    page.click("#view-logs")
    page.wait_for_url(server.url + "/devices/pi-act/logs?asked=1")
    page.wait_for_function(
        "document.querySelector('#logs-live').innerText.includes('agent started for pi-act')",
        timeout=30000,
    )
    assert "Taken " in page.inner_text("#taken")
    assert "woken by a server event" in page.inner_text("#lines")
    page.screenshot(path=str(artifacts / "device-logs.png"), full_page=True)
    page.goto(server.url + "/devices/pi-act")

    # Enter safe mode: a reason, then the agent stops updating and says so.
    page.fill("#quick-actions input[name=reason]", "site visit at 14:00")
    page.click("#enter-safe-mode")
    page.wait_for_url(server.url + "/devices/pi-act")
    agent.wait_for("mode normal -> safe_mode: entered by an operator")
    _wait("the server did not hear of safe mode", lambda: _status(server) == "safe_mode")
    # The open page follows: the status changes without a reload.
    page.wait_for_function(
        "document.querySelector('#device').innerText.includes('safe mode')", timeout=30000
    )
    page.reload()
    assert page.locator("#leave-safe-mode").is_visible()
    page.screenshot(path=str(artifacts / "device-safe-mode.png"), full_page=True)

    # Leave safe mode: the agent goes back to normal.
    page.fill("#quick-actions input[name=reason]", "visit over")
    page.click("#leave-safe-mode")
    page.wait_for_url(server.url + "/devices/pi-act")
    agent.wait_for("mode safe_mode -> normal: resumed from the control server")
    _wait("the server did not hear it left", lambda: _status(server) != "safe_mode")
    page.close()


def _fleet_cli(server: Any, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEETCORE, "fleet", "--server", server.url, "--token", token, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_same_actions_from_the_api_and_the_cli(server: Any) -> None:
    cred = server.enroll("pi-1")
    operator, viewer = server.token("operator"), server.token("viewer")
    r = _fleet_cli(server, operator, "safe-mode", "pi-1", "--reason", "site visit")
    assert r.returncode == 0, r.stderr
    assert server.desired("pi-1", cred)["safe_mode"] == 1
    r = _fleet_cli(server, operator, "wake", "pi-1")
    assert r.returncode == 0 and "check for updates now" in r.stdout
    r = _fleet_cli(server, operator, "check", "pi-1")
    assert r.returncode == 0 and "deep drift check" in r.stdout
    # A viewer may not; an unknown device is bad input; a reason is required.
    r = _fleet_cli(server, viewer, "safe-mode", "pi-1", "--reason", "x")
    assert r.returncode == 1 and "operator" in r.stderr
    assert _fleet_cli(server, operator, "wake", "nope").returncode == 2
    assert _fleet_cli(server, operator, "safe-mode", "pi-1").returncode == 2
    assert server.desired("pi-1", cred)["safe_mode"] == 1
    audit = server.request("GET", "/v1/audit", viewer).json()["audit"]
    done = [(a["action"], a["target"], a["reason"]) for a in audit]
    assert ("device.safe_mode", "pi-1", "site visit") in done
    assert ("device.wake", "pi-1", "") in done
    assert ("device.check", "pi-1", "") in done


def test_log_uploads_are_the_devices_own_and_checked(server: Any) -> None:
    cred, other = server.enroll("pi-1"), server.enroll("pi-2")
    viewer = server.token("viewer")
    assert server.request("GET", "/v1/devices/pi-1/logs", viewer).json()["logs"] is None
    assert server.request("POST", "/v1/devices/pi-1/logs/request", viewer).status_code == 403
    body = {"taken_at": "2026-01-01T12:00:00+00:00", "lines": ["12:00:00 info    started"]}
    r = server.request("POST", "/v1/devices/pi-1/logs", other, json=body)
    assert r.status_code == 403  # another device's credential
    r = server.request("POST", "/v1/devices/pi-1/logs", cred, json={**body, "lines": ["x" * 2001]})
    assert r.status_code == 400 and "lines" in r.json()["error"]
    assert server.request("POST", "/v1/devices/pi-1/logs", cred, json=body).status_code == 204
    logs = server.request("GET", "/v1/devices/pi-1/logs", viewer).json()["logs"]
    assert logs == {"taken_at": body["taken_at"], "lines": body["lines"]}
