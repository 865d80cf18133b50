"""Per-device series on /metrics: what devices report comes out with the
documented names and labels, passes the real ``promtool check metrics``, and
``device_metrics=False`` turns the series off."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families as parse_text

from fleetcore.testing.services import missing

DEVICE_FAMILIES = {
    "fleetcore_device_info": {
        "device",
        "role",
        "segment",
        "commit",
        "hardware",
        "agent_version",
        "mode",
    },
    "fleetcore_device_status": {"device", "status"},
    "fleetcore_device_last_seen_timestamp_seconds": {"device"},
    "fleetcore_device_cpu_ratio": {"device"},
    "fleetcore_device_memory_ratio": {"device"},
    "fleetcore_device_disk_ratio": {"device"},
    "fleetcore_device_network_receive_bytes_per_second": {"device"},
    "fleetcore_device_network_transmit_bytes_per_second": {"device"},
    "fleetcore_container_cpu_ratio": {"device", "container"},
    "fleetcore_container_memory_bytes": {"device", "container"},
    "fleetcore_container_restarts": {"device", "container"},
}

REPORT = {
    "status": "healthy",
    "commit": "a" * 40,
    "agent_version": "1.2.3",
    "cpu_percent": 12.5,
    "memory_percent": 40.0,
    "disk_percent": 91.0,
    "network_receive_bytes_per_second": 2048.0,
    "network_transmit_bytes_per_second": 512.0,
    "containers": [
        {"name": "web-app-1", "cpu_percent": 150.0, "memory_bytes": 52428800, "restarts": 3},
    ],
}


def _samples(text: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for family in parse_text(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def test_reported_metrics_come_out_per_device(server: Any) -> None:
    a = server.enroll("pi-1", role="web", segment="canary", labels={"hardware": "pi4"})
    b = server.enroll("pi-2", role="cam")
    server.report("pi-1", a, **REPORT)
    server.report("pi-2", b, status="safe_mode", cpu_percent=3.0)  # an older agent's report
    text = server.request("GET", "/metrics").text
    samples = _samples(text)
    for name, labels in DEVICE_FAMILIES.items():
        assert name in samples, name
        for sample in samples[name]:
            assert set(sample.labels) == labels, (name, sample.labels)
    info = {s.labels["device"]: s.labels for s in samples["fleetcore_device_info"]}
    assert info["pi-1"] == {
        "device": "pi-1",
        "role": "web",
        "segment": "canary",
        "commit": "a" * 40,
        "hardware": "pi4",
        "agent_version": "1.2.3",
        "mode": "",
    }
    assert info["pi-2"]["hardware"] == ""
    assert 'fleetcore_device_cpu_ratio{device="pi-1"} 0.125' in text
    assert 'fleetcore_device_disk_ratio{device="pi-1"} 0.91' in text
    assert 'fleetcore_device_cpu_ratio{device="pi-2"} 0.03' in text
    assert 'fleetcore_device_network_receive_bytes_per_second{device="pi-1"} 2048.0' in text
    assert 'fleetcore_device_status{device="pi-2",status="safe_mode"} 1.0' in text
    assert 'fleetcore_container_cpu_ratio{container="web-app-1",device="pi-1"} 1.5' in text
    assert 'fleetcore_container_restarts{container="web-app-1",device="pi-1"} 3.0' in text
    # pi-2 sent no network rates: no series rather than a made-up zero.
    rx = samples["fleetcore_device_network_receive_bytes_per_second"]
    assert [s.labels["device"] for s in rx] == ["pi-1"]


def test_a_report_without_the_new_keys_keeps_the_last_rates(server: Any) -> None:
    a = server.enroll("pi-1")
    server.report("pi-1", a, **REPORT)
    server.report("pi-1", a, status="degraded", cpu_percent=50.0)
    text = server.request("GET", "/metrics").text
    assert 'fleetcore_device_cpu_ratio{device="pi-1"} 0.5' in text
    assert 'fleetcore_device_network_transmit_bytes_per_second{device="pi-1"} 512.0' in text
    assert 'fleetcore_device_status{device="pi-1",status="degraded"} 1.0' in text


def test_bad_metrics_are_refused_naming_the_key(server: Any) -> None:
    a = server.enroll("pi-1")
    too_many = [{"name": f"c{i}"} for i in range(21)]
    for body, key in (
        ({"status": "healthy", "containers": too_many}, "containers"),
        ({"status": "healthy", "network_receive_bytes_per_second": -1.0}, "network_receive"),
        ({"status": "healthy", "containers": [{"name": "x", "restarts": "3"}]}, "restarts"),
    ):
        r = server.request("POST", "/v1/devices/pi-1/status", a, json=body)
        assert r.status_code == 400, body
        assert key in r.json()["error"], r.json()


def test_promtool_accepts_a_scrape_with_device_series(server: Any) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool (Debian package prometheus)")
    for i in range(3):
        credential = server.enroll(f"pi-{i}", labels={"hardware": "pi4"})
        server.report(f"pi-{i}", credential, **REPORT)
    text = server.request("GET", "/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_per_device_series_can_be_turned_off(make_server: Callable[..., Any]) -> None:
    server = make_server(name="quiet", device_metrics=False)
    a = server.enroll("pi-1")
    server.report("pi-1", a, **REPORT)
    text = server.request("GET", "/metrics").text
    assert "fleetcore_device_" not in text.replace("fleetcore_devices", "")
    assert "fleetcore_container_" not in text
    assert 'fleetcore_devices{status="healthy"} 1.0' in text
