"""The shipped Grafana dashboards: well-formed, and every query runs on a
real Prometheus scraping a real server, on metrics a real scrape has.

Grafana itself does not run here (no package for this system): the boards'
structure is checked, and their PromQL is run by Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families as parse_text

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.serverproc import ServerProcess

BOARDS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "grafana").glob("*.json"))
METRIC = re.compile(r"\b(fleetcore_[a-z_]+)\b")


def _queries(board: dict[str, Any]) -> Iterator[str]:
    for panel in board["panels"]:
        for target in panel["targets"]:
            yield target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            yield variable["definition"]


def test_the_boards_are_well_formed() -> None:
    assert [b.name for b in BOARDS] == ["device.json", "fleet-overview.json"]
    uids = set()
    for path in BOARDS:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            assert panel["datasource"]["uid"] == "${datasource}"
    assert len(uids) == len(BOARDS)


def _report(server: ServerProcess, device_id: str, token: str, **fields: Any) -> str:
    r = requests.post(
        f"{server.url}/v1/enroll",
        json={
            "enrollment_token": token,
            "device_id": device_id,
            "role": "web",
            "labels": {"hardware": "pi4"},
        },
        timeout=30,
    )
    assert r.status_code == 201, r.text
    credential: str = r.json()["credential"]
    r = requests.post(
        f"{server.url}/v1/devices/{device_id}/status",
        headers={"Authorization": f"Bearer {credential}"},
        json=fields,
        timeout=30,
    )
    assert r.status_code == 204, r.text
    return credential


def test_every_query_runs_on_metrics_a_real_scrape_has(
    tmp_path: Path, prometheus: Callable[..., Any]
) -> None:
    repo = FleetRepo.create(tmp_path / "repo")
    commit = repo.commit({"roles/web/activate.sh": "#!/bin/sh\n"}, "v1")
    with ServerProcess(tmp_path / "data", repo.path) as server:
        token = server.enrollment_token()
        credential = _report(
            server,
            "pi-1",
            token,
            status="healthy",
            cpu_percent=10.0,
            memory_percent=20.0,
            disk_percent=30.0,
            network_receive_bytes_per_second=100.0,
            network_transmit_bytes_per_second=50.0,
            containers=[{"name": "app", "cpu_percent": 5.0, "memory_bytes": 1e6, "restarts": 1}],
        )
        _report(server, "pi-2", token, status="safe_mode", disk_percent=95.0)
        # An update result and an active rollout: every family has samples.
        entry = {"timestamp": "2026-01-01T00:00:00+00:00", "to_commit": commit, "result": "success"}
        r = requests.post(
            f"{server.url}/v1/devices/pi-1/history",
            headers={"Authorization": f"Bearer {credential}"},
            json={"entries": [entry]},
            timeout=30,
        )
        assert r.status_code in (200, 204), r.text
        server.api("POST", "/v1/rollouts", {"commit": commit, "strategy": "canary"})
        text = requests.get(f"{server.url}/metrics", timeout=30).text
        scraped = {s.name for f in parse_text(text) for s in f.samples}
        prom = prometheus([f"127.0.0.1:{server.port}"])
        prom.wait_for("a scrape", lambda: prom.query("fleetcore_device_info"))
        for path in BOARDS:
            for expr in _queries(json.loads(path.read_text())):
                for name in METRIC.findall(expr):
                    assert name in scraped, f"{path.name}: {name} is in no scrape ({expr})"
                if expr.startswith("label_values("):
                    continue  # Grafana's own function, not PromQL
                runnable = (
                    expr.replace("$__rate_interval", "1m")
                    .replace('"$device"', '"pi-1"')
                    .replace("$device", ".*")
                    .replace("$role", ".*")
                    .replace("$segment", ".*")
                )
                prom.query(runnable)  # raises on PromQL Prometheus refuses
        # The device board's resource panel has the device's figures.
        assert prom.query('max(fleetcore_device_cpu_ratio{device="pi-1"})')[0]["value"][1] == "0.1"
