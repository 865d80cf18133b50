"""Failure pattern analysis: what a set of failing devices have in common.

Pure: it gets the failures and the population they came from (plain values)
and returns the ``pattern`` dict an incident carries. The seed's questions are
answered first (do all failures share the role, the error, the hardware, the
network, a short time frame?) and its rules turn them into a ``diagnosis``.

Beyond "everybody shares it", a label value is *implicated* when devices with
it fail far more often than devices without it (pi3 fails 90%, pi4 2%), even if
some failures lack it. The strength of that evidence is a one-sided Fisher
exact test on the 2x2 table (with the value / without it x failed / not
failed): the p-value is the chance of seeing at least that many failures among
the devices with the value if failing had nothing to do with it. Because every
label value seen among the failures is tested, the p-value is Bonferroni
corrected (multiplied by the number of values tested) before it is graded:
``strong`` below 0.001, ``moderate`` below 0.01, ``weak`` below 0.05.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from attrs import frozen

ROLE_CONFIG = "Role-specific config issue"
CODE_BUG = "Code bug in update"
NETWORK = "Network infrastructure issue"
HARDWARE = "Hardware-specific issue"
UNKNOWN = "Unknown pattern - investigate manually"
NO_FAILURES = "No failures"

# A bunch of failures is "the same time frame" when all of them happened
# within this share of the detection window (or a minute, whichever is
# longer): a bad update fails where it lands, in a burst, while unrelated
# failures spread over the window.
TIMEFRAME_SHARE = 0.25
MIN_TIMEFRAME_SECONDS = 60.0

# Implication thresholds: "far more often" means at least twice the rate of
# the others and ten points above it; fewer than two failing devices with a
# value implicate nothing.
MIN_FAILED_WITH_VALUE = 2
MIN_RATE_RATIO = 2.0
MIN_RATE_GAP = 0.10
SIGNIFICANCE = 0.05

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
_PATH = re.compile(r"(?<![\w.])(?:~|\.{1,2})?(?:/[\w.@+-]+)+/?|\b[a-z]:\\[\w\\.-]*", re.I)
_HEX = re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,})\b", re.I)
_NUMBER = re.compile(r"\d+(?:\.\d+)*")
_SPACE = re.compile(r"\s+")


@frozen
class DeviceFacts:
    """A device of the population the failures came from."""

    device_id: str
    role: str
    labels: dict[str, str]


@frozen
class DeviceFailure:
    """One failure: a failed update, a rollback, safe mode, unhealthy after
    an update. ``error`` is the raw message; ``at`` UNIX seconds."""

    device_id: str
    role: str
    error: str
    labels: dict[str, str]
    at: float


def normalise_error(error: str) -> str:
    """The error with what differs between devices stripped: UUIDs, paths,
    hex ids (commits, container ids) and numbers (ports, counts, durations),
    so ``health: http://10.0.0.7:8080 timed out after 3.2s`` compares equal
    on every device."""
    text = _UUID.sub("<id>", error.strip())
    text = _PATH.sub("<path>", text)
    text = _HEX.sub("<id>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACE.sub(" ", text).strip()[:200]


def analyse(
    failures: Sequence[DeviceFailure],
    population: Sequence[DeviceFacts],
    window_seconds: float,
) -> dict[str, Any]:
    """The pattern of ``failures`` among ``population`` (the devices in scope:
    a role, the fleet), seen over a window of ``window_seconds``.

    A device that failed several times counts once, with its latest failure.
    Failing devices missing from ``population`` are added to it. Returns a
    JSON-ready dict: ``same_role``, ``same_error``, ``same_hardware``,
    ``same_network`` (the shared value or None), ``same_timeframe`` (bool),
    ``shared_labels`` (every label all failing devices share),
    ``scope_shares`` (the role and labels every device in scope shares: a
    failure sharing those says nothing about its cause), ``errors``
    (normalised errors by device count), ``implicated`` (label values that
    fail far more often than the rest, with rates, counts and evidence),
    ``diagnosis`` (the seed's rules, plus a hardware rule) and
    ``explanation`` (sentences saying why).
    """
    latest: dict[str, DeviceFailure] = {}
    for f in failures:
        if f.device_id not in latest or f.at >= latest[f.device_id].at:
            latest[f.device_id] = f
    failed = list(latest.values())
    facts = {d.device_id: d for d in population}
    for f in failed:
        facts.setdefault(f.device_id, DeviceFacts(f.device_id, f.role, dict(f.labels)))
    result: dict[str, Any] = {
        "failed_devices": len(failed),
        "population": len(facts),
        "failure_rate": round(len(failed) / len(facts), 4) if facts else 0.0,
    }
    if not failed:
        result.update(
            same_role=None,
            same_error=None,
            same_hardware=None,
            same_network=None,
            same_timeframe=False,
            timeframe=None,
            shared_labels={},
            scope_shares={},
            errors=[],
            implicated=[],
            diagnosis=NO_FAILURES,
            explanation=[],
        )
        return result
    errors = Counter(normalise_error(f.error) for f in failed)
    shared = _shared_labels(failed)
    first, last = min(f.at for f in failed), max(f.at for f in failed)
    burst = max(window_seconds * TIMEFRAME_SHARE, MIN_TIMEFRAME_SECONDS)
    result.update(
        same_role=_same(f.role for f in failed),
        same_error=_same(normalise_error(f.error) for f in failed),
        same_hardware=shared.get("hardware"),
        same_network=shared.get("network"),
        same_timeframe=last - first <= burst,
        timeframe={
            "first_at": first,
            "last_at": last,
            "span_seconds": round(last - first, 3),
            "burst_seconds": burst,
        },
        shared_labels=shared,
        scope_shares=_scope_shares(list(facts.values())),
        errors=[{"error": e, "devices": n} for e, n in errors.most_common(5)],
        implicated=implicated(failed, list(facts.values())),
    )
    result["diagnosis"] = diagnose(result)
    result["explanation"] = _explain(result)
    return result


def diagnose(pattern: dict[str, Any]) -> str:
    """The seed's rules, in its order, with one addition before giving up:
    failures confined to one hardware (shared or strongly implicated) point
    at the hardware.

    A value every device in scope has explains nothing: in a one-role fleet
    every failure "shares the role", on one site every failure "shares the
    network". Such a shared role still reads as a role config issue unless
    the hardware or the network tells the failing devices apart, and a
    network or hardware everyone has never counts. One error in one burst
    reads as a code bug unless it stayed on one network or hardware that
    the rest of the scope does not have: then that is the lead to follow."""
    everyone = pattern.get("scope_shares", {})
    network = bool(pattern["same_network"]) and "network" not in everyone
    hardware = (bool(pattern["same_hardware"]) and "hardware" not in everyone) or any(
        i["label"] == "hardware" and i["evidence"] == "strong" for i in pattern["implicated"]
    )
    role_explains = "role" not in everyone or not (network or hardware)
    if pattern["same_role"] and pattern["same_error"] and role_explains:
        return ROLE_CONFIG
    if pattern["same_error"] and pattern["same_timeframe"] and not (network or hardware):
        return CODE_BUG
    if network:
        return NETWORK
    if hardware:
        return HARDWARE
    return UNKNOWN


def implicated(
    failed: Sequence[DeviceFailure], population: Sequence[DeviceFacts]
) -> list[dict[str, Any]]:
    """Label values (and roles, as label ``role``) that fail far more often
    than the rest of the population, strongest evidence first."""
    failed_ids = {f.device_id for f in failed}
    total, total_failed = len(population), len(failed_ids)
    candidates: set[tuple[str, str]] = set()
    for f in failed:
        candidates.add(("role", f.role))
        candidates.update(f.labels.items())
    found: list[dict[str, Any]] = []
    for label, value in sorted(candidates):
        with_value = [d for d in population if _value(d, label) == value]
        n_with = len(with_value)
        a = sum(1 for d in with_value if d.device_id in failed_ids)
        n_without = total - n_with
        if n_without == 0 or a < MIN_FAILED_WITH_VALUE:
            continue  # everybody has it (no contrast) or too few to say
        rate_with = a / n_with
        rate_without = (total_failed - a) / n_without
        if rate_with < max(rate_without * MIN_RATE_RATIO, rate_without + MIN_RATE_GAP):
            continue
        p = fisher_one_sided(a, n_with, total_failed, total)
        adjusted = min(1.0, p * len(candidates))
        if adjusted >= SIGNIFICANCE:
            continue
        found.append(
            {
                "label": label,
                "value": value,
                "failed": a,
                "devices": n_with,
                "rate": round(rate_with, 4),
                "others_failed": total_failed - a,
                "others": n_without,
                "others_rate": round(rate_without, 4),
                "p_value": float(f"{adjusted:.3g}"),
                "evidence": _grade(adjusted),
            }
        )
    found.sort(key=lambda i: (i["p_value"], -i["rate"], i["label"], i["value"]))
    return found


def fisher_one_sided(a: int, n_with: int, failed: int, total: int) -> float:
    """P(X >= a) for X hypergeometric: ``n_with`` devices drawn from ``total``
    of which ``failed`` failed. The one-sided Fisher exact test of "devices
    with the value fail more often"; log-gamma keeps large fleets exact enough
    without big integers."""
    hi = min(failed, n_with)
    if a > hi:
        return 0.0
    denominator = _log_comb(total, n_with)
    p = sum(
        math.exp(_log_comb(failed, x) + _log_comb(total - failed, n_with - x) - denominator)
        for x in range(a, hi + 1)
        if n_with - x <= total - failed
    )
    return min(1.0, p)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _grade(p: float) -> str:
    if p < 0.001:
        return "strong"
    if p < 0.01:
        return "moderate"
    return "weak"


def _value(device: DeviceFacts, label: str) -> str | None:
    return device.role if label == "role" else device.labels.get(label)


def _same(values: Any) -> str | None:
    distinct = set(values)
    if len(distinct) != 1:
        return None
    value: str = distinct.pop()
    return value or None


def _shared_labels(failed: Sequence[DeviceFailure]) -> dict[str, str]:
    common = dict(failed[0].labels)
    for f in failed[1:]:
        common = {k: v for k, v in common.items() if f.labels.get(k) == v}
    return dict(sorted(common.items()))


def _scope_shares(population: Sequence[DeviceFacts]) -> dict[str, str]:
    if not population:
        return {}
    common = {"role": population[0].role, **population[0].labels}
    for d in population[1:]:
        common = {k: v for k, v in common.items() if _value(d, k) == v}
    return dict(sorted(common.items()))


def _explain(p: dict[str, Any]) -> list[str]:
    n = p["failed_devices"]
    lines = [f"{n} of {p['population']} device(s) failed ({p['failure_rate']:.0%})."]
    for key, what in (
        ("same_role", "role"),
        ("same_hardware", "hardware"),
        ("same_network", "network"),
    ):
        if p[key] is not None:
            lines.append(f"All failures share {what} {p[key]!r}.")
    if p["same_error"] is not None:
        lines.append(f"All failures report the same error: {p['same_error']!r}.")
    elif p["errors"]:
        top = p["errors"][0]
        lines.append(f"Most common error ({top['devices']} of {n}): {top['error']!r}.")
    span = p["timeframe"]["span_seconds"]
    lines.append(f"Failures {'bunched' if p['same_timeframe'] else 'spread'} over {span:.0f}s.")
    for i in p["implicated"][:3]:
        lines.append(
            f"{i['label']}={i['value']} fails {i['rate']:.0%} ({i['failed']}/{i['devices']})"
            f" vs {i['others_rate']:.0%} ({i['others_failed']}/{i['others']}) for the rest;"
            f" {i['evidence']} evidence (p={i['p_value']:.2g}, one-sided Fisher, Bonferroni)."
        )
    return lines
