"""Prometheus text exposition, written by hand: a few gauges from the
database at scrape time and request latency histograms kept in memory."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import TYPE_CHECKING

import sqlalchemy as sa

from fleetcore.server import store as t

if TYPE_CHECKING:
    from fleetcore.server.service import Control

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _esc(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Latencies:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[str, str, str], list[float]] = defaultdict(
            lambda: [0.0] * (len(BUCKETS) + 2)
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        with self._lock:
            row = self._data[key]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            row[-2] += 1  # count
            row[-1] += seconds  # sum

    def render(self) -> list[str]:
        name = "fleetcore_http_request_duration_seconds"
        lines = [f"# HELP {name} Time to answer API requests.", f"# TYPE {name} histogram"]
        with self._lock:
            items = sorted(self._data.items())
            for (method, route, status), row in items:
                labels = f'method="{method}",route="{_esc(route)}",status="{status}"'
                for i, bound in enumerate(BUCKETS):
                    lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {row[i]:.0f}')
                lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {row[-2]:.0f}')
                lines.append(f"{name}_count{{{labels}}} {row[-2]:.0f}")
                lines.append(f"{name}_sum{{{labels}}} {row[-1]:.6f}")
        return lines


def render(ctl: Control, latencies: Latencies) -> str:
    from fleetcore.server.desired import Rollout
    from fleetcore.server.rollouts import step_progress

    out: list[str] = []

    def gauge(name: str, help_: str, samples: list[tuple[dict[str, object], float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            text = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

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
        progress = [(ro, step_progress(ctl, conn, ro)[-1]) for ro in active]
    gauge("fleetcore_devices", "Devices by status.", [({"status": s}, n) for s, n in by_status])
    gauge(
        "fleetcore_devices_by_commit",
        "Devices by the commit they run.",
        [({"commit": c or "none"}, n) for c, n in by_commit],
    )
    gauge("fleetcore_devices_by_role", "Devices by role.", [({"role": r}, n) for r, n in by_role])
    out.append("# HELP fleetcore_updates_total Update results devices reported.")
    out.append("# TYPE fleetcore_updates_total counter")
    out += [f'fleetcore_updates_total{{result="{_esc(r)}"}} {n}' for r, n in results]
    for metric in ("targeted", "updated", "healthy", "failed"):
        gauge(
            f"fleetcore_rollout_{metric}_devices",
            f"Devices {metric} at the current step of each active rollout.",
            [
                ({"rollout": ro.id, "role": ro.role or "*", "state": ro.state}, step[metric])
                for ro, step in progress
            ],
        )
    gauge(
        "fleetcore_rollout_step",
        "Current step (0-based) of each active rollout.",
        [({"rollout": ro.id, "role": ro.role or "*"}, ro.step) for ro, _ in progress],
    )
    gauge("fleetcore_sse_streams", "Connected event streams.", [({}, ctl.hub.connected)])
    if ctl.channels:
        out.append("# HELP fleetcore_channel_events_total Events handed to each --events channel.")
        out.append("# TYPE fleetcore_channel_events_total counter")
        for ch in ctl.channels:
            for result, count in (("sent", ch.sent), ("dropped", ch.dropped)):
                labels = f'channel="{_esc(ch.label)}",result="{result}"'
                out.append(f"fleetcore_channel_events_total{{{labels}}} {count}")
    out += latencies.render()
    return "\n".join(out) + "\n"
