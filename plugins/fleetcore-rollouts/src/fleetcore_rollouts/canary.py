"""The ``canary`` rollout: a commit goes through the segments one at a time.

Every device belongs to a segment (``segment`` in its ``agent.toml``):
``canary`` (a few percent of the fleet, devices you can afford to lose),
``early`` (the next 10-20%) or ``general`` (everybody else, the default). A
new commit on the branch goes to the promoted segments only::

    1. push to main                 segments = ["canary"]
    2. canary devices update; wait, watch their health
    3. promote                      segments = ["canary", "early"]
    4. early devices update; wait, watch
    5. promote                      segments = ["canary", "early", "general"]

Devices outside the promoted segments run the rollout's ``stable`` commit (or
keep what they run). If any segment fails, stop promoting and move ``stable``
back, or pin the fleet to a known-good commit.

Promotion is a change of ``segments``: in git-only mode a commit to
``fleet.toml``, in managed mode an operator action (or the server's automatic
promotion) that also wakes the newly promoted devices. Start the next commit
again from ``["canary"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from attrs import field, frozen

from fleetcore.plugin import hookimpl
from fleetcore.plugin.options import SEGMENTS, checked, one_of
from fleetcore.plugin.types import DeviceInfo, RolloutStrategy


def _segments(inst: Any, attr: Any, value: tuple[str, ...]) -> None:
    check = one_of(*SEGMENTS)
    for segment in value:
        check(inst, attr, segment)


@frozen(kw_only=True)
class CanaryOptions:
    """``[rollout]`` keys of the canary strategy::

    [rollout]
    strategy = "canary"
    segments = ["canary", "early"]
    """

    segments: tuple[str, ...] = field(default=("canary",), validator=checked(_segments))
    """The promoted segments, whose devices may take the branch head: any of
    ``canary``, ``early`` and ``general``. An empty list holds the rollout."""


class CanaryStrategy:
    def __init__(self, options: CanaryOptions) -> None:
        self.segments = frozenset(options.segments)

    def eligible(self, device: DeviceInfo, commit: str) -> bool:
        return device.segment in self.segments


@hookimpl
def fleetcore_register_rollout_strategies() -> Iterator[RolloutStrategy]:
    yield RolloutStrategy(
        name="canary",
        summary="Promoted segments only: canary, then early, then general",
        factory=CanaryStrategy,
        config_type=CanaryOptions,
    )
