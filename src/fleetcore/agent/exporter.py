"""``fleetcore agent run --metrics-listen HOST:PORT``: the device's own
figures on a local ``/metrics``, for a Prometheus on the same LAN. Off by
default: most devices sit behind NAT and reach Prometheus through the
server's re-export instead (docs/observability.md).

The standard library's HTTP server and a hand-written text exposition keep
the agent free of a metrics library. The series have the server's names and
labels, so the same dashboards and rules read either source; rates are
between two scrapes (a sampler of its own, so scrapes do not shorten the
status report's intervals). Containers are left to the server's re-export.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fleetcore import __version__
from fleetcore.agent.context import AgentContext
from fleetcore.agent.report import status_report
from fleetcore.agent.sampling import Sampler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))


def exposition(ctx: AgentContext, sampler: Sampler) -> str:
    """The text format: the device's info, status and resources."""
    device = ctx.device.device_id
    report = status_report(ctx.config)
    resources = sampler.sample()

    def family(name: str, help_: str, samples: list[tuple[str, float]]) -> Iterator[str]:
        if not samples:
            return
        yield f"# HELP {name} {help_}"
        yield f"# TYPE {name} gauge"
        for labels, value in samples:
            yield f"{name}{{{labels}}} {value!r}"

    info = _labels(
        device=device,
        role=ctx.device.role,
        segment=ctx.device.segment,
        commit=report["commit"] or "",
        hardware=ctx.config.labels.get("hardware", ""),
        agent_version=__version__,
        mode=report["mode"],
    )
    one = _labels(device=device)
    ratios = [
        ("cpu", resources.cpu_percent, "CPU in use, 0 to 1, between two scrapes."),
        ("memory", resources.memory_percent, "Memory in use (not available), 0 to 1."),
        ("disk", resources.disk_percent, "Disk in use on the state folder's filesystem, 0 to 1."),
    ]
    rates = [
        ("receive", resources.network_receive_bytes_per_second, "Bytes per second received."),
        ("transmit", resources.network_transmit_bytes_per_second, "Bytes per second sent."),
    ]
    lines = [
        *family("fleetcore_device_info", "What the device is and runs.", [(info, 1.0)]),
        *family(
            "fleetcore_device_status",
            "1 for the device's current status.",
            [(_labels(device=device, status=report["status"]), 1.0)],
        ),
    ]
    for name, percent, help_ in ratios:
        samples = [] if percent is None else [(one, round(percent / 100, 4))]
        lines += family(f"fleetcore_device_{name}_ratio", help_, samples)
    for name, rate, help_ in rates:
        samples = [] if rate is None else [(one, float(rate))]
        lines += family(f"fleetcore_device_network_{name}_bytes_per_second", help_, samples)
    return "\n".join(lines) + "\n"


class MetricsExporter:
    """The local ``/metrics`` endpoint, served from a daemon thread."""

    def __init__(self, ctx: AgentContext, host: str, port: int) -> None:
        sampler = Sampler(ctx.store.root)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                with lock:  # one sampler: scrapes take turns
                    body = exposition(ctx, sampler).encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass  # a scrape every few seconds is not news

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="metrics-exporter", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> MetricsExporter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
