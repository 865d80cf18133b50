"""Per-device series on /metrics: what each device's agent measured and sent
with its last status report, re-exported for Prometheus. Devices sit behind
NAT and sleep, so nothing could scrape them directly.

Cardinality: per device one ``fleetcore_device_info`` series, one
``fleetcore_device_status`` series (its current status only), one last-seen
timestamp, up to five resource series (CPU, memory, disk, network in and
out) and three series per container, with at most
:data:`fleetcore.server.bodies.MAX_CONTAINERS` containers a report: at most
``8 + 3 * 20 = 68`` series per device. ``fleetcore server run
--no-device-metrics`` turns all of them off for fleets where that is too
many; the fleet-wide gauges stay.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from fleetcore.server import store as t
from fleetcore.server.devices import labels_of

if TYPE_CHECKING:
    from fleetcore.server.service import Control

INFO_LABELS = ("role", "segment", "commit", "hardware", "agent_version", "mode")
"""``fleetcore_device_info``'s labels besides ``device``. ``hardware`` is the
device's ``hardware`` label (``[labels]`` in agent.toml), empty without one."""

RATIOS = (
    ("cpu", "cpu_percent", "CPU in use, 0 to 1, between the device's last two reports."),
    ("memory", "memory_percent", "Memory in use (not available), 0 to 1."),
    ("disk", "disk_percent", "Disk in use on the agent's state folder's filesystem, 0 to 1."),
)
RATES = (
    ("receive", "Bytes per second received on every interface but loopback."),
    ("transmit", "Bytes per second sent on every interface but loopback."),
)


class DeviceCollector(Collector):
    """Each device's last report, read from the database at scrape time."""

    def __init__(self, ctl: Control) -> None:
        self.ctl = ctl

    def collect(self) -> Iterator[Metric]:
        d = t.devices.c
        with self.ctl.store.connect() as conn:
            rows = conn.execute(
                sa.select(
                    d.device_id,
                    d.role,
                    d.segment,
                    d.commit,
                    d.agent_version,
                    d.mode,
                    d.status,
                    d.last_seen,
                    d.labels,
                    d.cpu_percent,
                    d.memory_percent,
                    d.disk_percent,
                    d.metrics,
                )
                .where(d.revoked_at.is_(None))
                .order_by(d.device_id)
            ).all()
        info = InfoMetricFamily(
            "fleetcore_device", "What each device is and runs.", labels=["device", *INFO_LABELS]
        )
        status = GaugeMetricFamily(
            "fleetcore_device_status",
            "1 for each device's current status (healthy, degraded, safe_mode, offline, ...).",
            labels=["device", "status"],
        )
        seen = GaugeMetricFamily(
            "fleetcore_device_last_seen_timestamp_seconds",
            "When each device last reported, in seconds since the epoch.",
            labels=["device"],
        )
        ratios = {
            column: GaugeMetricFamily(f"fleetcore_device_{name}_ratio", help_, labels=["device"])
            for name, column, help_ in RATIOS
        }
        rates = {
            name: GaugeMetricFamily(
                f"fleetcore_device_network_{name}_bytes_per_second", help_, labels=["device"]
            )
            for name, help_ in RATES
        }
        c_cpu = GaugeMetricFamily(
            "fleetcore_container_cpu_ratio",
            "CPU a container uses, as a share of one CPU (can exceed 1 on several).",
            labels=["device", "container"],
        )
        c_memory = GaugeMetricFamily(
            "fleetcore_container_memory_bytes",
            "Memory a container uses.",
            labels=["device", "container"],
        )
        c_restarts = GaugeMetricFamily(
            "fleetcore_container_restarts",
            "Times the container engine restarted a container.",
            labels=["device", "container"],
        )
        for row in rows:
            device = str(row.device_id)
            labels = labels_of(row.labels)
            info.add_metric(
                [
                    device,
                    str(row.role),
                    str(row.segment),
                    row.commit or "",
                    labels.get("hardware", ""),
                    row.agent_version or "",
                    row.mode or "",
                ],
                {},
            )
            status.add_metric([device, str(row.status)], 1)
            if row.last_seen is not None:
                seen.add_metric([device], float(row.last_seen))
            for column, family in ratios.items():
                value = getattr(row, column)
                if value is not None:
                    family.add_metric([device], round(float(value) / 100, 4))
            extra = _metrics_of(row.metrics)
            for name, family in rates.items():
                value = extra.get(f"network_{name}_bytes_per_second")
                if isinstance(value, int | float):
                    family.add_metric([device], float(value))
            for container in extra.get("containers") or ():
                name = str(container.get("name", ""))
                if container.get("cpu_percent") is not None:
                    c_cpu.add_metric([device, name], float(container["cpu_percent"]) / 100)
                if container.get("memory_bytes") is not None:
                    c_memory.add_metric([device, name], float(container["memory_bytes"]))
                c_restarts.add_metric([device, name], float(container.get("restarts") or 0))
        yield info
        yield status
        yield seen
        yield from ratios.values()
        yield from rates.values()
        yield c_cpu
        yield c_memory
        yield c_restarts


def _metrics_of(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
