"""What a cycle returns, and the errors that end an update."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from attrs import frozen

from fleetcore.errors import FleetcoreError

Outcome = Literal[
    "converged",
    "updated",
    "failed",
    "rolled_back",
    "deferred",
    "locked",
    "safe_mode",
    "unreachable",
    "rebooting",
]
EXIT_CODES: dict[Outcome, int] = {
    "converged": 0,
    "updated": 0,
    "failed": 1,
    "rolled_back": 1,
    "deferred": 3,
    "locked": 3,
    "safe_mode": 4,
    "unreachable": 5,
    "rebooting": 0,
}


@frozen(kw_only=True)
class CycleResult:
    """What one cycle did, for the CLI and the loop."""

    outcome: Outcome
    message: str
    commit: str | None = None
    pending_commit: str | None = None
    retry_after: dt.datetime | None = None

    @property
    def exit_code(self) -> int:
        if self.outcome == "updated" and self.pending_commit:
            return 3  # healthy, but a newer commit is already waiting
        return EXIT_CODES[self.outcome]


class UpdateFailed(FleetcoreError):
    """A step before activation refused the release."""


class Unhealthy(FleetcoreError):
    """The activated release did not pass its health checks."""


class DiskFull(FleetcoreError):
    """Not enough free space for the update even after cleaning old releases."""
