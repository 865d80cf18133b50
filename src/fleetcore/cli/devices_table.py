"""``fleetcore fleet devices``: the ``--label`` filter and the table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click


def label_query(labels: tuple[str, ...]) -> str:
    """``--label KEY=VALUE`` (repeatable) as the query of ``GET /v1/devices``."""
    from urllib.parse import urlencode

    for value in labels:
        key, sep, _ = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint="--label")
    return f"?{urlencode([('label', value) for value in labels])}" if labels else ""


def labels_text(labels: dict[str, str] | None) -> str:
    """``k=v,k=v`` (sorted), ``-`` for none."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "-"


def device_rows(devices: list[dict[str, Any]]) -> Iterator[str]:
    yield (
        f"{'DEVICE':<24} {'ROLE':<12} {'SEGMENT':<8} {'STATUS':<10} {'COMMIT':<12} "
        f"{'LAST SEEN':<32} LABELS"
    )
    for d in devices:
        yield (
            f"{d['device_id']:<24} {d['role']:<12} {d['segment']:<8} {d['status']:<10} "
            f"{(d['commit'] or 'none')[:12]:<12} {d['last_seen'] or 'never':<32} "
            f"{labels_text(d.get('labels'))}"
        )
