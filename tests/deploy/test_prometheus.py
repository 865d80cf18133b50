"""The shipped Prometheus configuration: checked by ``promtool``, and a real
Prometheus scraping a real server with simulated devices, whose per-device
series carry the documented labels and whose safe-mode rule fires."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.serverproc import FLEETCORE, ServerProcess
from fleetcore.testing.services import missing

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool(*args: str) -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool (Debian package prometheus)")
        raise AssertionError("unreachable")
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, cwd=DEPLOY
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_promtool_checks_the_shipped_config_and_rules() -> None:
    assert "SUCCESS" in _promtool("check", "config", "prometheus.yml")
    assert "6 rules found" in _promtool("check", "rules", "fleetcore-rules.yml")


def test_promtool_unit_tests_the_alert_rules() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "fleetcore-rules.test.yml")


def _fast_rules(tmp_path: Path) -> Path:
    """The shipped rules with every ``for:`` wait cut to zero: the waits are
    for real fleets (and covered by ``promtool test rules``); here the rule
    itself must fire within a few scrapes."""
    text = (DEPLOY / "fleetcore-rules.yml").read_text()
    fast = tmp_path / "rules.yml"
    fast.write_text(re.sub(r"(?m)^(\s+for:) \S+$", r"\1 0s", text))
    return fast


def test_a_real_prometheus_scrapes_devices_and_fires_safe_mode(
    tmp_path: Path, prometheus: Callable[..., Any]
) -> None:
    repo = FleetRepo.create(tmp_path / "repo")
    repo.commit({"roles/web/activate.sh": "#!/bin/sh\n"}, "v1")
    with ServerProcess(tmp_path / "data", repo.path) as server:
        token = server.enrollment_token()
        sim = subprocess.Popen(
            [*FLEETCORE, "simulate", "--server", server.url, "--enrollment-token", token,
             "--devices", "3", "--role", "web=100%", "--label", "hardware=pi4:100%",
             "--report-interval", "1s", "--duration", "120s", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            # A device in safe mode reports it like its agent does.
            r = requests.post(
                f"{server.url}/v1/enroll",
                json={"enrollment_token": token, "device_id": "pi-safe", "role": "web"},
                timeout=30,
            )
            assert r.status_code == 201, r.text
            credential = r.json()["credential"]
            r = requests.post(
                f"{server.url}/v1/devices/pi-safe/status",
                headers={"Authorization": f"Bearer {credential}"},
                json={"status": "safe_mode", "mode": "safe_mode", "disk_percent": 42.0},
                timeout=30,
            )
            assert r.status_code == 204, r.text
            prom = prometheus([f"127.0.0.1:{server.port}"], rules=[_fast_rules(tmp_path)])

            cpu = prom.wait_for(
                "CPU series for the simulated devices",
                lambda: (
                    len(prom.query("fleetcore_device_cpu_ratio")) >= 3
                    and prom.query("fleetcore_device_cpu_ratio")
                ),
            )
            # pi-safe sent no CPU figure: no series for it, rather than a made-up 0.
            devices = sorted(s["metric"]["device"] for s in cpu)
            assert devices == ["sim-000001", "sim-000002", "sim-000003"]
            for sample in cpu:
                assert set(sample["metric"]) == {"__name__", "device", "instance", "job"}
            for name in ("memory_ratio", "disk_ratio", "network_receive_bytes_per_second"):
                series = prom.query(f'fleetcore_device_{name}{{device="sim-000002"}}')
                assert len(series) == 1, name
                assert float(series[0]["value"][1]) >= 0
            info = prom.query('fleetcore_device_info{device="sim-000001"}')
            assert info[0]["metric"]["role"] == "web"
            assert info[0]["metric"]["hardware"] == "pi4"
            assert info[0]["metric"]["segment"] != ""
            disk = prom.query('fleetcore_device_disk_ratio{device="pi-safe"}')
            assert float(disk[0]["value"][1]) == 0.42

            def firing() -> list[dict[str, Any]]:
                return [
                    a
                    for a in prom.alerts()
                    if a["labels"]["alertname"] == "FleetcoreDeviceSafeMode"
                    and a["state"] == "firing"
                ]

            alerts = prom.wait_for("firing safe-mode alert", firing)
            assert [a["labels"]["device"] for a in alerts] == ["pi-safe"]
            assert alerts[0]["labels"]["severity"] == "critical"
            # Nothing else is wrong with this fleet.
            others = {a["labels"]["alertname"] for a in prom.alerts()} - {"FleetcoreDeviceSafeMode"}
            assert others == set(), others
        finally:
            sim.terminate()
            out, err = sim.communicate(timeout=60)
    assert sim.returncode in (0, -15), err
    if out.strip():
        assert json.loads(out)["errors"] == {}, out
