"""A real OpenBao dev server for tests (``bao server -dev``), and the admin
calls tests need: KV writes, policies, AppRoles, tokens, sealing.
Imported by tests only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fleetcore.testing.services import free_port, wait_for_port

ROOT_TOKEN = "root"  # noqa: S105 - the dev server's root token, tests only


def bao_binary() -> str | None:
    beside = Path(sys.executable).parent / "bao"
    if beside.is_file():
        return str(beside)
    return shutil.which("bao")


class Bao:
    """One ``bao server -dev`` on a loopback port, with an in-memory store."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "bao.log").open("wb")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "server",
                "-dev",
                f"-dev-root-token-id={ROOT_TOKEN}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                "-dev-no-store-token",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HOME": str(self.workdir)},
        )
        if not wait_for_port(self.port, 30):
            self.stop()
            raise RuntimeError(f"bao did not listen on {self.port}: {self.log()}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status, _ = self.api("GET", "sys/health", token=None)
            if status == 200:
                break
            time.sleep(0.1)
        self.api("POST", "sys/auth/approle", {"type": "approle"})

    def log(self) -> str:
        path = self.workdir / "bao.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def api(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = ROOT_TOKEN,
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Vault-Token"] = token
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - our own http:// server
            f"{self.address}/v1/{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                raw, status = response.read(), response.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        return status, (json.loads(raw) if raw else {})

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, payload = self.api(method, path, body)
        if status not in (200, 204):
            raise AssertionError(f"{method} {path}: HTTP {status} {payload}")
        return payload

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HOME": str(self.workdir),
            "BAO_ADDR": self.address,
            "VAULT_ADDR": self.address,
            "BAO_TOKEN": ROOT_TOKEN,
            "VAULT_TOKEN": ROOT_TOKEN,
        }
        return subprocess.run(
            [self.binary, *args], capture_output=True, text=True, env=env, check=False
        )

    # -- fixtures of a fleet ---------------------------------------------------------

    def put(self, path: str, values: dict[str, Any]) -> None:
        self.ok("POST", f"secret/data/{path}", {"data": values})

    def device(self, device_id: str, role: str, **token: Any) -> tuple[str, str]:
        """A policy reading the role's and this device's paths, and an AppRole
        for the device. Returns (role_id, secret_id)."""
        policy = (
            f'path "secret/data/fleet/roles/{role}" {{ capabilities = ["read"] }}\n'
            f'path "secret/data/fleet/devices/{device_id}" {{ capabilities = ["read"] }}\n'
        )
        self.ok("PUT", f"sys/policies/acl/{device_id}", {"policy": policy})
        self.ok(
            "POST",
            f"auth/approle/role/{device_id}",
            {"token_policies": [device_id], **token},
        )
        role_id = self.ok("GET", f"auth/approle/role/{device_id}/role-id")["data"]["role_id"]
        secret_id = self.ok("POST", f"auth/approle/role/{device_id}/secret-id")["data"]["secret_id"]
        return role_id, secret_id

    def token(self, policies: list[str], **options: Any) -> str:
        payload = self.ok("POST", "auth/token/create", {"policies": policies, **options})
        return str(payload["auth"]["client_token"])

    def seal(self) -> None:
        proc = self.cli("operator", "seal")
        if proc.returncode != 0:
            raise AssertionError(f"bao operator seal: {proc.stderr}")

    def unseal(self) -> None:
        keys = [
            line.split(":", 1)[1].strip()
            for line in self.log().splitlines()
            if line.startswith("Unseal Key:")
        ]
        assert keys, "no unseal key in the dev server's output"
        self.ok("PUT", "sys/unseal", {"key": keys[0]})
