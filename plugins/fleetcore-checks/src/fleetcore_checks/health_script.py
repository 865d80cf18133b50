"""The ``health-script`` check: the role's own ``health.sh`` after activation.

Runs whenever the active release has a ``health.sh``, after the role's settle
time: in the release folder, with the ``FLEETCORE_*`` variables and the
role's secrets. Exit 0 means healthy; anything else (or running past the
timeout) rolls the device back and records the last lines of its output.
"""

from __future__ import annotations

from collections.abc import Iterator

from attrs import field, frozen

from fleetcore.plugin import hookimpl
from fleetcore.plugin.options import Duration, checked
from fleetcore.plugin.types import Check, CheckContext, Finding
from fleetcore_checks._options import positive_duration

SCRIPT = "health.sh"


@frozen(kw_only=True)
class HealthScriptOptions:
    """``[health.health-script]`` in ``role.toml``::

    [health.health-script]
    timeout = "1m"
    """

    timeout: Duration = field(default=Duration(30.0), validator=checked(positive_duration))
    """How long ``health.sh`` may run before it is stopped and counts as unhealthy."""


def run(ctx: CheckContext) -> list[Finding]:
    # Imported when the check runs: registering it must stay cheap.
    from fleetcore_checks._scripts import run_script_check

    return run_script_check(ctx, SCRIPT)


def applies(ctx: CheckContext) -> bool:
    return (ctx.release_dir / SCRIPT).is_file()


@hookimpl
def fleetcore_register_health_checks() -> Iterator[Check]:
    yield Check(
        name="health-script",
        summary="The role's health.sh exits 0",
        run=run,
        config_type=HealthScriptOptions,
        applies=applies,
    )
