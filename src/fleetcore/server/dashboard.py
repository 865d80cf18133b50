"""What the dashboard's pages show, worked out from the service's reads:
relative times, uptimes, the overview's shares, the device list's filter
and pages, a rollout step's options in words, a device's sparklines. Pure
functions of their arguments (no database, no request), so the page
handlers in :mod:`fleetcore.server.pages` stay short.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fleetcore.server.samples import Samples, sparkline

PAGE_SIZE = 50
STATUSES = ("healthy", "degraded", "safe_mode", "failed", "updating", "offline", "unknown")
SUMMARY = ("healthy", "degraded", "safe_mode", "offline")
"""The overview's cards beside total and online, as the seed's fleet view has them."""


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def ago(value: str | None, now: dt.datetime) -> str:
    """``30 seconds ago``, ``5 minutes ago``, ``3 hours ago``, ``2 days ago``;
    ``in 4 hours`` for a time ahead; ``never`` for none."""
    stamp = parse_time(value)
    if stamp is None:
        return "never"
    seconds = (now - stamp).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size:
            n = int(seconds // size)
            text = f"{n} {unit}{'' if n == 1 else 's'}"
            return f"in {text}" if ahead else f"{text} ago"
    return "just now"


def absolute(value: str | None) -> str:
    """``2026-11-30 10:04:31 UTC``: to the second, for a tooltip."""
    stamp = parse_time(value)
    if stamp is None:
        return ""
    return stamp.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def uptime(seconds: float | None) -> str:
    """``3 days 4 hours``, ``5 hours 12 minutes``, ``7 minutes``."""
    if seconds is None or seconds < 0:
        return "unknown"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60

    def n(count: int, unit: str) -> str:
        return f"{count} {unit}{'' if count == 1 else 's'}"

    if days:
        return f"{n(days, 'day')} {n(hours, 'hour')}"
    if hours:
        return f"{n(hours, 'hour')} {n(minutes, 'minute')}"
    return n(minutes, "minute")


def duration(seconds: float | None) -> str:
    """``42s``, ``3m 5s``, ``2h 10m``; ``none`` for None."""
    if seconds is None:
        return "none"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes}m {rest}s" if rest else f"{minutes}m"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60}m" if rest // 60 else f"{hours}h"


def rate(value: float | None) -> str:
    """Bytes per second as ``12.3 kB/s``."""
    if value is None:
        return "?"
    for unit, size in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B/s"


def share(n: int, total: int) -> str:
    """``99.6%`` of the total, one decimal; ``0%`` of nothing."""
    if not total:
        return "0%"
    value = 100 * n / total
    return f"{value:.0f}%" if value in (0, 100) else f"{value:.1f}%"


def summary(status: Mapping[str, Any]) -> dict[str, Any]:
    """The overview's numbers: cards with shares, the last hour's updates."""
    total = int(status["total"])
    by_status = status["by_status"]
    cards = [("total", "devices", total, "")]
    cards.append(("online", "online", int(status["online"]), share(status["online"], total)))
    for name in SUMMARY:
        n = int(by_status.get(name, 0))
        cards.append((name, name.replace("_", " "), n, share(n, total)))
    for name, n in sorted(by_status.items()):
        if name not in SUMMARY:
            cards.append((name, name.replace("_", " "), int(n), share(int(n), total)))
    hour = status.get("updates_last_hour") or {}
    return {
        "cards": cards,
        "updates": sum(hour.values()),
        "failed": int(hour.get("failed", 0)) + int(hour.get("rollback", 0)),
        "average": duration(status.get("update_seconds_last_hour")),
    }


def filter_devices(
    devices: Sequence[dict[str, Any]], query: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The devices matching the list's filters: ``q`` (a part of the id, the
    hostname or the commit), ``role``, ``segment``, ``status`` and ``label``
    (``KEY=VALUE``, or ``KEY`` for any value)."""
    q = query.get("q", "").strip().lower()
    role, segment, status = query.get("role", ""), query.get("segment", ""), query.get("status", "")
    key, _, value = query.get("label", "").strip().partition("=")
    found = []
    for d in devices:
        if q and not any(
            q in str(d.get(f) or "").lower() for f in ("device_id", "hostname", "commit")
        ):
            continue
        if (role and d["role"] != role) or (segment and d["segment"] != segment):
            continue
        if status and d["status"] != status:
            continue
        if key and (key not in d["labels"] or (value and d["labels"][key] != value)):
            continue
        found.append(d)
    return found


def page_of(items: Sequence[Any], page: str | None, size: int = PAGE_SIZE) -> dict[str, Any]:
    """One page of ``items`` (1-based ``page``, clamped to the pages there are)."""
    pages = max(1, math.ceil(len(items) / size))
    try:
        number = min(max(1, int(page or 1)), pages)
    except ValueError:
        number = 1
    start = (number - 1) * size
    return {
        "items": list(items[start : start + size]),
        "number": number,
        "pages": pages,
        "total": len(items),
        "first": start + 1 if items else 0,
        "last": min(start + size, len(items)),
    }


def step_options(options: Mapping[str, Any]) -> str:
    """A rollout step's options in words: ``10% of devices``, ``segment
    canary``, ``segments canary, early``; other keys as ``key: value``."""
    parts = []
    for key, value in options.items():
        if key == "percent":
            parts.append(
                f"{value:g}% of devices" if isinstance(value, int | float) else f"{value}%"
            )
        elif key in ("segment", "segments"):
            names = [value] if isinstance(value, str) else list(value)
            parts.append(f"segment{'s' if len(names) > 1 else ''} {', '.join(map(str, names))}")
        elif isinstance(value, list | tuple):
            parts.append(f"{key.replace('_', ' ')}: {', '.join(map(str, value))}")
        elif isinstance(value, bool):
            parts.append(f"{key.replace('_', ' ')}: {'yes' if value else 'no'}")
        else:
            parts.append(f"{key.replace('_', ' ')}: {value}")
    return "; ".join(parts) or "every device"


def sparklines(samples: Samples, device_id: str, now: dt.datetime) -> dict[str, Any]:
    """The last hour of a device's figures as SVG polylines (empty: no samples)."""
    end = now.timestamp()
    series = samples.series(device_id, end - 3600)
    # A device seen for less than the hour gets the width of the page to
    # itself (at least five minutes), not a sliver at the right-hand end.
    first = min((points[0][0] for points in series.values() if points), default=end - 3600)
    start = min(first, end - 300)
    lines: dict[str, Any] = {
        name: sparkline(series[name], start, end, top=100.0) for name in ("cpu", "memory", "disk")
    }
    network = series["receive"] + series["transmit"]
    top = max((v for _, v in network), default=0.0) or 1.0
    lines["receive"] = sparkline(series["receive"], start, end, top=top)
    lines["transmit"] = sparkline(series["transmit"], start, end, top=top)
    lines["count"] = max(len(points) for points in series.values())
    lines["since"] = ago(dt.datetime.fromtimestamp(start, dt.UTC).isoformat(), now)
    return lines
