"""Validators shared by the options classes of this package.

Kept apart from the runners so that registering a plugin imports nothing
but attrs and the core's config helpers.
"""

from __future__ import annotations

from typing import Any

from fleetcore.plugin.options import Duration


def positive_duration(_inst: Any, attr: Any, value: Duration | None) -> None:
    if value is not None and value.seconds <= 0:
        raise ValueError(f"{attr.name} must be longer than 0s, got {value}")
