"""The ``percentage`` rollout: a growing share of the fleet takes the new commit.

Each device falls in a bucket from 0 to 99 for each commit, computed from its
id and the commit alone (:func:`fleetcore.plugin.percentage_bucket`); it may
take the commit when its bucket is below ``percent``. The buckets of a commit
are spread evenly and independently of those of the previous commit, so the
first devices are not always the same ones. The seed's schedule::

    T+0     0%      nobody
    T+5m    1%      ~10 of 1000 devices
    T+10m   5%      ~50
    T+20m   25%     ~250
    T+40m   100%    everybody

In git-only mode each step is a commit to ``fleet.toml`` changing
``percent``; in managed mode the server raises it (and halts the rollout at
the current step when the blast-radius limits are hit).
"""

from __future__ import annotations

from collections.abc import Iterator

from attrs import field, frozen

from fleetcore.plugin import hookimpl, percentage_bucket
from fleetcore.plugin.options import between, checked
from fleetcore.plugin.types import DeviceInfo, RolloutStrategy


@frozen(kw_only=True)
class PercentageOptions:
    """``[rollout]`` keys of the percentage strategy::

    [rollout]
    strategy = "percentage"
    percent = 25
    """

    percent: int = field(validator=checked(between(0, 100)))
    """Share of the fleet (0-100) that may take the branch head: 0 is
    nobody, 100 everybody."""


class PercentageStrategy:
    def __init__(self, options: PercentageOptions) -> None:
        self.percent = options.percent

    def eligible(self, device: DeviceInfo, commit: str) -> bool:
        return percentage_bucket(device.device_id, commit) < self.percent


@hookimpl
def fleetcore_register_rollout_strategies() -> Iterator[RolloutStrategy]:
    yield RolloutStrategy(
        name="percentage",
        summary="A percentage of devices, chosen by a hash of device id and commit",
        factory=PercentageStrategy,
        config_type=PercentageOptions,
    )
