"""A real control server (uvicorn on 127.0.0.1) per test, on SQLite or a
real PostgreSQL, with a clock the test moves instead of sleeping."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from fleetcore.agent.clock import ManualClock
from fleetcore.server import engine
from fleetcore.server.app import ServerConfig, build
from fleetcore.server.service import Control
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.services import free_port

ROLE_FILES = {
    "roles/web/activate.sh": "#!/bin/sh\necho web\n",
    "roles/web/role.toml": "[health]\n",
    "roles/web/conf/site.conf": "listen 80\n" * 200,
    "roles/cam/activate.sh": "#!/bin/sh\necho cam\n",
}
_db_names = itertools.count()


class Server:
    """One server process-equivalent: uvicorn in a thread, stoppable and
    restartable on the same data folder and database."""

    def __init__(self, data_dir: Path, repo: str, db_url: str | None, clock: ManualClock) -> None:
        self.data_dir = data_dir
        self.repo = repo
        self.db_url = db_url
        self.clock = clock
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.ctl: Control

    def start(self, **config: Any) -> Server:
        settings = {"tick_interval": 3600.0, "fetch_interval": 3600.0, "keepalive": 0.5}
        pm = config.pop("pm", None)
        settings.update(config)
        self.app, self.ctl = build(
            ServerConfig(
                data_dir=self.data_dir,
                repo=self.repo,
                db_url=self.db_url,
                now=self.clock.now,
                **settings,
            ),
            pm,
        )
        uv = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(uv)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(15)
            self.ctl.store.close()
            self._server = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def tick(self) -> None:
        """One pass of the engine (blast radius, then rollouts), as its
        background task runs it."""
        engine.tick(self.ctl)

    def token(self, role: str) -> str:
        return self.ctl.store.create_token("operator", role, name=f"test-{role}")

    def enrollment_token(self) -> str:
        return self.ctl.store.create_token("enrollment", None, ttl=3600)

    # -- HTTP helpers ---------------------------------------------------------------

    def request(self, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kw)

    def enroll(
        self,
        device_id: str,
        role: str = "web",
        segment: str = "general",
        labels: dict[str, str] | None = None,
    ) -> str:
        token = getattr(self, "_enroll_token", None) or self.enrollment_token()
        self._enroll_token = token
        body: dict[str, Any] = {
            "enrollment_token": token,
            "device_id": device_id,
            "role": role,
            "segment": segment,
            "hostname": f"{device_id}.local",
        }
        if labels is not None:
            body["labels"] = labels
        r = self.request("POST", "/v1/enroll", json=body)
        assert r.status_code == 201, r.text
        credential: str = r.json()["credential"]
        return credential

    def report(self, device_id: str, credential: str, **fields: Any) -> None:
        r = self.request("POST", f"/v1/devices/{device_id}/status", credential, json=fields)
        assert r.status_code == 204, r.text

    def desired(self, device_id: str, credential: str) -> dict[str, Any]:
        r = self.request("GET", f"/v1/devices/{device_id}/desired", credential)
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data


@pytest.fixture
def repo(tmp_path: Path) -> FleetRepo:
    fleet = FleetRepo.create(tmp_path / "fleet")
    fleet.commit(ROLE_FILES, "first")
    return fleet


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    pg = request.getfixturevalue("postgres")
    url: str = pg.create_database(f"fleet_{next(_db_names)}_{int(time.time() * 1000) % 10**8}")
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make_server(
    tmp_path: Path, repo: FleetRepo, clock: ManualClock
) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(db_url: str | None = None, name: str = "server", **config: Any) -> Server:
        server = Server(tmp_path / name, str(repo.path), db_url, clock).start(**config)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., Server]) -> Server:
    """A server on SQLite (the embedded default)."""
    return make_server()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """The system's Chromium through playwright (it cannot download browsers here).

    Per module, not per session: playwright's sync API keeps an event loop
    running in the main thread while it is open, and tests that start their
    own (``asyncio.run``) must not follow it."""
    import shutil

    from fleetcore.testing.services import missing

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright")
    path = "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else shutil.which("chromium")
    if path is None:
        missing("Chromium")
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=args)
        yield browser
        browser.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    """Where a test saves what a person should look at (screenshots):
    ``$FLEETCORE_TEST_ARTIFACTS`` when set (CI keeps it), else the test's tmp folder."""
    import os

    root = os.environ.get("FLEETCORE_TEST_ARTIFACTS")
    folder = Path(root) if root else tmp_path / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
