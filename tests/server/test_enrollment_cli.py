"""The enrollment commands as an admin runs them: scoped tokens, accepting a
pending device, allowing one re-enrollment, device secrets; and
`fleetcore fleet device ID` still showing a device."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.server.test_cli import fleetcore


def test_admins_scope_tokens_and_admit_devices_from_the_command_line(server: Any) -> None:
    admin = server.token("admin")
    env = {"FLEETCORE_SERVER": server.url, "FLEETCORE_TOKEN": admin}

    def fleet(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        if stdin is None:
            return fleetcore("fleet", *args, env=env)
        return fleetcore("fleet", *args, "--value-file", _file(server, stdin), env=env)

    r = fleet("token", "enrollment", "--role", "web", "--segment", "canary", "--max-uses", "1",
              "--ttl", "2h", "--require-approval", "--name", "lab", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["max_uses"] == 1 and made["require_approval"] is True and made["role"] == "web"
    token = made["token"]
    r = fleet("token", "enrollment", "--max-uses", "0")
    assert r.returncode == 2

    body = {"enrollment_token": token, "device_id": "pi-1", "role": "web", "segment": "general"}
    r = server.request("POST", "/v1/enroll", json=body)
    assert r.status_code == 403 and r.json()["field"] == "segment"
    r = server.request("POST", "/v1/enroll", json={**body, "segment": "canary"})
    assert r.status_code == 201
    cred = r.json()["credential"]
    r = fleet("token", "list")
    assert "segment canary, used 1/1, needs approval" in r.stdout and "used-up" in r.stdout

    # The old form shows the device, and so does `device show`.
    r = fleet("device", "pi-1")
    assert r.returncode == 0, r.stderr
    assert "pending: waiting for `fleetcore fleet device accept pi-1`" in r.stdout
    assert json.loads(fleet("device", "pi-1", "--json").stdout)["pending"] is True
    assert json.loads(fleet("device", "--json", "pi-1").stdout)["device_id"] == "pi-1"
    assert json.loads(fleet("device", "show", "pi-1", "--json").stdout)["pending"] is True
    assert "allow-reenroll" in fleet("device", "--help").stdout

    assert server.request("GET", "/v1/devices/pi-1/desired", cred).status_code == 403
    r = fleet("device", "accept", "pi-1", "--reason", "checked the serial")
    assert r.returncode == 0 and "pi-1 accepted" in r.stdout
    assert server.desired("pi-1", cred)["why"] == "hold"
    r = fleet("device", "accept", "pi-1")
    assert r.returncode == 1 and "not pending" in r.stderr

    # One re-enrollment, allowed by an admin, with a reason.
    r = fleet("device", "allow-reenroll", "pi-1")
    assert r.returncode == 2 and "--reason" in r.stderr
    r = fleet("device", "allow-reenroll", "pi-1", "--reason", "reflashed", "--ttl", "10m")
    assert r.returncode == 0 and "pi-1 may enroll again once, until" in r.stdout
    other = server.enrollment_token()
    r = server.request("POST", "/v1/enroll", json={**body, "enrollment_token": other})
    assert r.status_code == 201
    assert server.request("GET", "/v1/devices/pi-1/desired", cred).status_code == 401

    # A device's own secret.
    r = fleet("secrets", "set", "--device", "pi-1", "API_KEY", stdin="device-key")
    assert r.returncode == 0, r.stderr
    r = fleet("secrets", "list", "--device", "pi-1", "--json")
    assert [s["name"] for s in json.loads(r.stdout)] == ["API_KEY"]
    r = fleet("secrets", "unset", "--device", "pi-1", "API_KEY")
    assert r.returncode == 0


def test_the_server_issues_scoped_enrollment_tokens(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    r = fleetcore("server", "enrollment-token", "--data-dir", data, "--role", "cam",
                  "--segment", "early", "--max-uses", "3", "--require-approval")  # fmt: skip
    assert r.returncode == 0 and r.stdout.startswith("fce_"), r.stderr
    r = fleetcore("server", "token", "list", "--data-dir", data, "--json")
    [item] = json.loads(r.stdout)
    assert (item["role"], item["segment"], item["max_uses"], item["require_approval"]) == (
        "cam",
        "early",
        3,
        True,
    )
    r = fleetcore("server", "enrollment-token", "--data-dir", data, "--segment", "everywhere")
    assert r.returncode == 2


def _file(server: Any, value: str) -> str:
    path = Path(server.data_dir) / "value.txt"
    path.write_text(value + "\n")
    return str(path)
