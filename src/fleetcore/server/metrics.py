"""Prometheus metrics with ``prometheus_client``: request latency histograms
kept in memory, and the fleet's gauges and counters read from the database at
scrape time by a collector.

Each server app has its own registry (never the process-wide default one), so
several apps in one process, as in the tests, keep their numbers apart. The
scraper's ``Accept`` header chooses the format: OpenMetrics when it asks for
``application/openmetrics-text``, the classic text format otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from fleetcore.server import schema
from fleetcore.server import store as t

if TYPE_CHECKING:
    from fleetcore.server.service import Control

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Latencies:
    """One app's metrics registry, with its request latency histogram."""

    def __init__(self, *, device_metrics: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.device_metrics = device_metrics
        """Per-device series (``fleetcore.server.device_metrics``); off for huge fleets."""
        self._histogram = Histogram(
            "fleetcore_http_request_duration_seconds",
            "Time to answer API requests.",
            ["method", "route", "status"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._fleet: FleetCollector | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self._histogram.labels(method, route, str(status)).observe(seconds)

    def bind(self, ctl: Control) -> None:
        """Read the fleet's numbers from ``ctl`` at each scrape (once per app)."""
        with self._lock:
            if self._fleet is None:
                self._fleet = FleetCollector(ctl)
                self.registry.register(self._fleet)
                if self.device_metrics:
                    from fleetcore.server.device_metrics import DeviceCollector

                    self.registry.register(DeviceCollector(ctl))


class FleetCollector(Collector):
    """The database's gauges and counters, read when Prometheus scrapes."""

    def __init__(self, ctl: Control) -> None:
        self.ctl = ctl

    def collect(self) -> Iterator[Metric]:
        from fleetcore.server.desired import Rollout
        from fleetcore.server.progress import current_step

        ctl = self.ctl
        with ctl.store.connect() as conn:
            d = t.devices.c
            by_status = conn.execute(sa.select(d.status, sa.func.count()).group_by(d.status)).all()
            by_commit = conn.execute(sa.select(d.commit, sa.func.count()).group_by(d.commit)).all()
            by_role = conn.execute(sa.select(d.role, sa.func.count()).group_by(d.role)).all()
            h = t.history.c
            results = conn.execute(sa.select(h.result, sa.func.count()).group_by(h.result)).all()
            active = [
                Rollout.from_row(r)
                for r in conn.execute(
                    sa.select(t.rollouts).where(t.rollouts.c.state.in_(("running", "halted")))
                )
            ]
            progress = [(ro, current_step(ctl, conn, ro)) for ro in active]
            incident = conn.execute(
                sa.select(schema.incidents.c.level)
                .where(schema.incidents.c.state == "open")
                .limit(1)
            ).first()

        def gauge(
            name: str, help_: str, labels: list[str], samples: list[tuple[list[str], float]]
        ) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, help_, labels=labels)
            for values, value in samples:
                family.add_metric(values, value)
            return family

        yield gauge(
            "fleetcore_devices",
            "Devices by status.",
            ["status"],
            [([str(s)], n) for s, n in by_status],
        )
        yield gauge(
            "fleetcore_devices_by_commit",
            "Devices by the commit they run.",
            ["commit"],
            [([c or "none"], n) for c, n in by_commit],
        )
        yield gauge(
            "fleetcore_devices_by_role",
            "Devices by role.",
            ["role"],
            [([str(r)], n) for r, n in by_role],
        )
        updates = CounterMetricFamily(
            "fleetcore_updates", "Update results devices reported.", labels=["result"]
        )
        for result, n in results:
            updates.add_metric([str(result)], n)
        yield updates
        for metric in ("targeted", "updated", "healthy", "failed"):
            yield gauge(
                f"fleetcore_rollout_{metric}_devices",
                f"Devices {metric} at the current step of each active rollout.",
                ["rollout", "role", "state"],
                [([str(ro.id), ro.role or "*", ro.state], step[metric]) for ro, step in progress],
            )
        yield gauge(
            "fleetcore_rollout_step",
            "Current step (0-based) of each active rollout.",
            ["rollout", "role"],
            [([str(ro.id), ro.role or "*"], ro.step) for ro, _ in progress],
        )
        level = None if incident is None else incident.level
        yield gauge(
            "fleetcore_incident_open",
            "1 for the level of the open blast-radius incident, 0 for the others.",
            ["level"],
            [([name], float(name == level)) for name in ("warning", "critical", "emergency")],
        )
        yield GaugeMetricFamily(
            "fleetcore_sse_streams", "Connected event streams.", value=ctl.hub.connected
        )
        yield GaugeMetricFamily(
            "fleetcore_wakeups_waiting",
            "Devices a change moved that wait to be told (--wake-rate).",
            value=ctl.wakeups.waiting,
        )
        if ctl.channels:
            events = CounterMetricFamily(
                "fleetcore_channel_events",
                "Events handed to each --events channel.",
                labels=["channel", "result"],
            )
            for ch in ctl.channels:
                events.add_metric([ch.label, "sent"], ch.sent)
                events.add_metric([ch.label, "dropped"], ch.dropped)
            yield events
        if ctl.alert_pumps:
            alerts = CounterMetricFamily(
                "fleetcore_alerts",
                "Alerts handed to each --alerts channel: sent, or dropped after retrying.",
                labels=["channel", "result"],
            )
            for pump in ctl.alert_pumps:
                alerts.add_metric([pump.label, "sent"], pump.sent)
                alerts.add_metric([pump.label, "dropped"], pump.dropped)
            yield alerts


class _WithoutCreated(Collector):
    """A registry's metrics less the histograms' ``_created`` samples, which
    the classic text format would show as extra gauge series (OpenMetrics
    has a place for them)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            kept = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            kept.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield kept


def render(ctl: Control, latencies: Latencies, accept: str | None = None) -> tuple[bytes, str]:
    """The exposition for a scraper whose ``Accept`` header is ``accept``,
    and its content type."""
    latencies.bind(ctl)
    encoder, content_type = choose_encoder(accept or "")
    if content_type.startswith("application/openmetrics-text"):
        return encoder(latencies.registry), content_type
    return encoder(_WithoutCreated(latencies.registry)), content_type
