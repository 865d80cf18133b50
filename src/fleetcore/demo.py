"""``fleetcore demo``: a local agent converging the example fleet, for real.

It copies the example fleet into a fresh git repository, writes an
``agent.toml`` for one device, and runs the real ``fleetcore`` commands a
user would type: a first install, an update, and a broken release that the
agent rolls back by itself. Nothing is simulated: the role starts a real web
server, and every step goes through git, the manifest check, validate.sh,
the atomic switch and the health checks.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.services import free_port

AGENT_TOML = """\
device_id = "pi-demo-01"
role = "web"
segment = "canary"
state_dir = "state"

[source]
repo = "{repo}"
branch = "main"

[throttle]
min_interval = "0s"      # the demo updates at once; devices default to 5m
failure_pause = "0s"
max_per_hour = 100
"""


def example_fleet() -> Path:
    """The example fleet: in a checkout, ``examples/fleet``; when installed,
    the copy shipped inside the package."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "examples" / "fleet", here.parent / "example_fleet"):
        if (candidate / "fleet.toml").exists():
            return candidate
    raise FileNotFoundError("the example fleet is not installed")


class Demo:
    def __init__(self, workdir: Path, echo: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.echo = echo
        self.port = free_port()
        self.repo = FleetRepo.create(workdir / "fleet")
        self.config = workdir / "agent.toml"

    def run(self) -> int:
        self.step("A fleet repo, made from the example fleet")
        shutil.copytree(example_fleet(), self.repo.path, dirs_exist_ok=True)
        self._set_port(self.port)
        v1 = self.repo.commit(message="web: first release")
        self.echo(f"  {self.repo.path}  (commit {v1[:12]})")
        self.config.write_text(AGENT_TOML.format(repo=self.repo.path))
        self.echo(f"  agent config: {self.config}")

        self.step("First install")
        self.fleetcore("agent", "once")
        self.show_page()

        self.step("An update: one file changes in git")
        self.repo.write({"roles/web/www/index.html": _page("v2")})
        self.repo.commit(message="web: v2 page")
        self.fleetcore("agent", "once")
        self.show_page()

        self.step("A broken release: the server listens on the wrong port")
        self.repo.write(
            {
                "roles/web/config/web.env": f"PORT={free_port()}\n",
                "roles/web/www/index.html": _page("v3 (broken)"),
            }
        )
        self.repo.commit(message="web: v3 moves the port")
        code = self.fleetcore("agent", "once", check=False)
        self.echo(f"  exit code {code}: the agent rolled back by itself")
        self.show_page()

        self.step("What the device says about itself")
        self.fleetcore("agent", "status")
        self.fleetcore("agent", "history")
        return 0

    def stop(self) -> None:
        """Stop the example's web server."""
        pidfile = self.workdir / "state" / "web.pid"
        if pidfile.exists():
            subprocess.run(
                ["sh", "-c", f"kill $(cat {shlex.quote(str(pidfile))})"], capture_output=True
            )

    def step(self, title: str) -> None:
        self.echo(f"\n== {title}")

    def fleetcore(self, *args: str, check: bool = True) -> int:
        argv = [*args, "--config", str(self.config)]
        self.echo(f"$ fleetcore {' '.join(argv)}")
        proc = subprocess.run(
            [sys.executable, "-m", "fleetcore", *argv],
            capture_output=True,
            text=True,
            cwd=self.workdir,
        )
        for line in (proc.stderr + proc.stdout).splitlines():
            self.echo(f"  {line}")
        if check and proc.returncode not in (0, 3):
            raise SystemExit(f"demo step failed with exit code {proc.returncode}")
        return proc.returncode

    def show_page(self) -> None:
        url = f"http://127.0.0.1:{self.port}/"
        for _ in range(20):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = response.read().decode()
                title = body.split("<h1>")[1].split("</h1>")[0]
                self.echo(f"  {url} says: {title}")
                return
            except (OSError, IndexError):
                time.sleep(0.2)
        self.echo(f"  {url} does not answer")

    def _set_port(self, port: int) -> None:
        role = self.repo.path / "roles/web"
        (role / "config/web.env").write_text(f"PORT={port}\n")
        toml = (role / "role.toml").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        (role / "role.toml").write_text(toml)


def _page(version: str) -> str:
    return textwrap.dedent(f"""\
        <!doctype html>
        <title>fleetcore example</title>
        <h1>Hello from release {version}</h1>
        """)


def main(workdir: Path | None, keep: bool) -> int:
    owned = workdir is None
    root = Path(tempfile.mkdtemp(prefix="fleetcore-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    demo = Demo(root)
    try:
        return demo.run()
    finally:
        if not keep:
            demo.stop()
            if owned:
                shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\nkept {root}; the web server still runs (see state/web.pid)")


def summary(workdir: Path) -> dict[str, object]:
    """The demo's end state, for tests."""
    state = json.loads((workdir / "state" / "state.json").read_text())
    return {"status": state["status"]}
