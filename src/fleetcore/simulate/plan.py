"""The simulation's options and the fleet they describe.

Every device property is drawn from the options and ``seed`` alone: shares
are turned into exact counts (largest remainder), then dealt out in an order
shuffled by a seeded generator, so ``--role web=70%,camera=30%`` over 1,000
devices gives exactly 700 web devices, the same 700 on every run.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence

from attrs import field, frozen

from fleetcore.errors import FleetcoreError

SEGMENTS = ("canary", "early", "general")
SIMULATED_FAILURE = "health: simulated failure"


class OptionError(FleetcoreError):
    """A simulator option that cannot be used; the message names the option."""

    exit_code = 2


# -- values ----------------------------------------------------------------------


@frozen
class Share:
    """One value of a property and the fraction of the fleet that has it."""

    value: str
    fraction: float


@frozen
class FailRule:
    """``COMMIT:KEY=VALUE[:RATE]``: matching devices fail health on ``commit``."""

    commit: str
    """A commit prefix, or ``any``."""
    key: str | None
    """``role``, ``segment``, a label key, or None for every device (``*``)."""
    value: str | None
    rate: float
    text: str

    def matches_commit(self, commit: str) -> bool:
        return self.commit == "any" or commit.startswith(self.commit)


@frozen(kw_only=True)
class Plan:
    """Everything a run needs to know, checked."""

    devices: int
    prefix: str = "sim-"
    roles: tuple[Share, ...] = (Share("web", 1.0),)
    segments: tuple[Share, ...] = (
        Share("canary", 0.05),
        Share("early", 0.15),
        Share("general", 0.80),
    )
    labels: tuple[tuple[str, tuple[Share, ...]], ...] = ()
    report_interval: float = 60.0
    poll_interval: float = 60.0
    update_time: float = 2.0
    fail: tuple[FailRule, ...] = ()
    offline: float = 0.0
    flap: float = 0.0
    duration: float | None = 600.0
    until_converged: bool = False
    seed: int = 0


@frozen(kw_only=True)
class DeviceSpec:
    """One virtual device, as drawn from the plan."""

    index: int
    device_id: str
    role: str
    segment: str
    labels: dict[str, str] = field(factory=dict)
    behaviour: str = "online"
    """``online``, ``offline`` (goes silent at some point) or ``flap`` (comes and goes)."""

    def attribute(self, key: str) -> str | None:
        if key == "role":
            return self.role
        if key == "segment":
            return self.segment
        return self.labels.get(key)


# -- parsing ---------------------------------------------------------------------

_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_fraction(text: str, option: str) -> float:
    """``30%`` or ``0.3`` -> 0.3; anything outside 0..1 is an error."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise OptionError(f"{option}: expected a share like 30% or 0.3, got {text!r}") from None
    if not 0 <= value <= 1:
        raise OptionError(f"{option}: a share must be between 0% and 100%, got {text!r}")
    return value


def parse_shares(
    text: str, option: str, *, sep: str = "=", allowed: Sequence[str] = ()
) -> tuple[Share, ...]:
    """``web=70%,camera=30%`` -> shares that add up to 100%."""
    shares: list[Share] = []
    for part in text.split(","):
        name, found, amount = part.strip().partition(sep)
        if not found or not name:
            raise OptionError(f"{option}: expected NAME{sep}SHARE[,...], got {part.strip()!r}")
        if not _WORD.match(name):
            raise OptionError(f"{option}: {name!r} is not a name (letters, digits, '.', '_', '-')")
        if allowed and name not in allowed:
            raise OptionError(
                f"{option}: unknown value {name!r}; expected one of {', '.join(allowed)}"
            )
        if any(s.value == name for s in shares):
            raise OptionError(f"{option}: {name!r} is named twice")
        shares.append(Share(name, parse_fraction(amount, option)))
    total = sum(s.fraction for s in shares)
    if abs(total - 1.0) > 1e-6:
        raise OptionError(f"{option}: the shares add up to {total:.0%}, not 100%")
    return tuple(shares)


def parse_label(text: str) -> tuple[str, tuple[Share, ...]]:
    """``hardware=pi4:70%,pi3:30%``."""
    key, found, rest = text.partition("=")
    if not found or not _WORD.match(key.strip()):
        raise OptionError(f"--label: expected KEY=VALUE:SHARE[,VALUE:SHARE...], got {text!r}")
    return key.strip(), parse_shares(rest, f"--label {key.strip()}", sep=":")


def parse_fail(text: str) -> FailRule:
    """``COMMIT:KEY=VALUE[:RATE]`` (``*`` for every device), e.g. ``abc123:hardware=pi3``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise OptionError(f"--fail: expected COMMIT:KEY=VALUE[:RATE], got {text!r}")
    commit, selector = parts[0].strip(), parts[1].strip()
    if commit != "any" and not re.fullmatch(r"[0-9a-f]{4,64}", commit):
        raise OptionError(f"--fail: {commit!r} is not a commit prefix (hex digits) or 'any'")
    if selector == "*":
        key = value = None
    else:
        key, found, value = selector.partition("=")
        if not found or not _WORD.match(key) or not value:
            raise OptionError(f"--fail: expected KEY=VALUE or * after the commit, got {selector!r}")
    rate = parse_fraction(parts[2], "--fail") if len(parts) == 3 else 1.0
    return FailRule(commit=commit, key=key, value=value, rate=rate, text=text)


# -- the fleet -------------------------------------------------------------------


def deal(shares: Sequence[Share], n: int, rng: random.Random) -> list[str]:
    """Exactly ``round(fraction * n)`` of each value (largest remainder), shuffled."""
    exact = [s.fraction * n for s in shares]
    counts = [int(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    values = [s.value for s, c in zip(shares, counts, strict=True) for _ in range(c)]
    rng.shuffle(values)
    return values


def devices(plan: Plan) -> list[DeviceSpec]:
    """The devices of the plan: the same list for the same options and seed."""
    rng = random.Random(plan.seed)  # noqa: S311 - a repeatable fleet, not a secret
    n = plan.devices
    roles = deal(plan.roles, n, rng)
    segments = deal(plan.segments, n, rng)
    labels = [(key, deal(shares, n, rng)) for key, shares in plan.labels]
    behaviours = deal(
        [
            Share("offline", plan.offline),
            Share("flap", plan.flap),
            Share("online", max(0.0, 1.0 - plan.offline - plan.flap)),
        ],
        n,
        rng,
    )
    width = max(6, len(str(n)))
    return [
        DeviceSpec(
            index=i,
            device_id=f"{plan.prefix}{i + 1:0{width}d}",
            role=roles[i],
            segment=segments[i],
            labels={key: values[i] for key, values in labels},
            behaviour=behaviours[i],
        )
        for i in range(n)
    ]


def fails(plan: Plan, device: DeviceSpec, commit: str) -> bool:
    """Whether ``device`` fails health on ``commit`` under the plan's rules.

    A rule with a rate below 1 picks its devices by a hash of the seed, the
    rule, the device and the commit: the same devices on every run.
    """
    for rule in plan.fail:
        if not rule.matches_commit(commit):
            continue
        if rule.key is not None and device.attribute(rule.key) != rule.value:
            continue
        if rule.rate >= 1.0:
            return True
        digest = hashlib.sha256(
            f"{plan.seed}:{rule.text}:{device.device_id}:{commit}".encode()
        ).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < rule.rate:
            return True
    return False
