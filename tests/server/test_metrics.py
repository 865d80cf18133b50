"""/metrics on a real server: names and labels as documented, both exposition
formats by the scraper's Accept header, one registry per app, and the real
``promtool check metrics`` on a real scrape."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from fleetcore.testing.services import missing

FAMILIES = {
    "fleetcore_devices": ("gauge", {"status"}),
    "fleetcore_devices_by_commit": ("gauge", {"commit"}),
    "fleetcore_devices_by_role": ("gauge", {"role"}),
    "fleetcore_updates": ("counter", {"result"}),
    "fleetcore_rollout_targeted_devices": ("gauge", {"rollout", "role", "state"}),
    "fleetcore_rollout_updated_devices": ("gauge", {"rollout", "role", "state"}),
    "fleetcore_rollout_healthy_devices": ("gauge", {"rollout", "role", "state"}),
    "fleetcore_rollout_failed_devices": ("gauge", {"rollout", "role", "state"}),
    "fleetcore_rollout_step": ("gauge", {"rollout", "role"}),
    "fleetcore_sse_streams": ("gauge", set()),
    "fleetcore_wakeups_waiting": ("gauge", set()),
    "fleetcore_http_request_duration_seconds": ("histogram", {"method", "route", "status"}),
}


def _busy(server: Any) -> None:
    """Devices in a few states, reports, history: every family has samples."""
    a = server.enroll("pi-1", role="web")
    b = server.enroll("pi-2", role="cam")
    server.report("pi-1", a, status="healthy")
    server.report("pi-2", b, status="degraded")
    r = server.request(
        "POST",
        "/v1/devices/pi-1/history",
        a,
        json={
            "entries": [
                {
                    "timestamp": "2026-01-01T00:00:00+00:00",
                    "to_commit": "a" * 40,
                    "result": "success",
                }
            ]
        },
    )
    assert r.status_code in (200, 204), r.text
    assert server.request("GET", "/v1/devices/nope/desired", a).status_code >= 400


def test_the_documented_names_and_labels(server: Any) -> None:
    _busy(server)
    r = server.request("GET", "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = {f.name: f for f in parse_text(r.text)}
    for name, (kind, labels) in FAMILIES.items():
        assert name in families, name
        assert families[name].type == kind, name
        for sample in families[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
    assert 'fleetcore_devices{status="degraded"} 1.0' in r.text
    assert 'fleetcore_devices_by_role{role="cam"} 1.0' in r.text
    assert "fleetcore_updates_total{" in r.text
    route = 'method="POST",route="/v1/devices/{device_id}/status",status="204"'
    assert f"fleetcore_http_request_duration_seconds_count{{{route}}} 2.0" in r.text
    buckets = [
        s
        for s in families["fleetcore_http_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels.get("route") == "/v1/devices/{device_id}/status"
    ]
    assert [s.labels["le"] for s in buckets][-3:] == ["2.5", "5.0", "+Inf"]
    assert buckets[-1].value == 2
    # Only today's series: no "_created" gauges in the classic format.
    assert "_created" not in r.text


def test_openmetrics_when_the_scraper_asks(server: Any) -> None:
    _busy(server)
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    r = server.request("GET", "/metrics", headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(r.text)}  # strict: raises on bad input
    assert set(FAMILIES) <= set(families)
    assert families["fleetcore_updates"].type == "counter"


def test_each_app_counts_its_own_requests(make_server: Callable[..., Any]) -> None:
    one, two = make_server(name="one"), make_server(name="two")
    for _ in range(3):
        assert one.request("GET", "/v1/health").status_code == 200
    text_one = one.request("GET", "/metrics").text
    text_two = two.request("GET", "/metrics").text
    count = "fleetcore_http_request_duration_seconds_count{"
    route = 'method="GET",route="/v1/health",status="200"'
    assert f"{count}{route}}} 3.0" in text_one
    assert not any(line.startswith(count) for line in text_two.splitlines())


def test_promtool_accepts_a_real_scrape(server: Any) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool (Debian package prometheus)")
    _busy(server)
    server.request("GET", "/metrics")  # a scrape that is itself in the histogram
    text = server.request("GET", "/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
