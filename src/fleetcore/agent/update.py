"""Former home of the agent; its parts are now modules of their own
(``agent``, ``cycle``, ``desired``, ``pipeline``, ``rollback``, ...).

Kept so that code outside fleetcore importing ``Agent`` or ``CycleResult``
from here keeps working; nothing inside fleetcore imports this module.
"""

from __future__ import annotations

from fleetcore.agent.agent import Agent
from fleetcore.agent.results import (
    EXIT_CODES,
    CycleResult,
    DiskFull,
    Outcome,
    Unhealthy,
    UpdateFailed,
)

__all__ = ["EXIT_CODES", "Agent", "CycleResult", "DiskFull", "Outcome", "Unhealthy", "UpdateFailed"]
