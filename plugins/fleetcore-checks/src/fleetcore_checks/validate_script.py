"""The ``validate-script`` check: the role's own ``validate.sh`` before activation.

Runs whenever a release has a ``validate.sh``: in the release folder, with
the role's secrets in place and the ``FLEETCORE_*`` variables set, before
anything is switched. A non-zero exit keeps the current release running and
reports the last lines of the script's output.
"""

from __future__ import annotations

from collections.abc import Iterator

from attrs import field, frozen

from fleetcore.plugin import hookimpl
from fleetcore.plugin.options import Duration, checked
from fleetcore.plugin.types import Check, CheckContext, Finding
from fleetcore_checks._options import positive_duration

SCRIPT = "validate.sh"


@frozen(kw_only=True)
class ValidateScriptOptions:
    """``[validate.validate-script]`` in ``role.toml``::

    [validate.validate-script]
    timeout = "5m"
    """

    timeout: Duration = field(default=Duration(120.0), validator=checked(positive_duration))
    """How long ``validate.sh`` may run before it is stopped and counts as failed."""


def run(ctx: CheckContext) -> list[Finding]:
    # Imported when the check runs: registering it must stay cheap.
    from fleetcore_checks._scripts import run_script_check

    return run_script_check(ctx, SCRIPT)


def applies(ctx: CheckContext) -> bool:
    return (ctx.release_dir / SCRIPT).is_file()


@hookimpl
def fleetcore_register_validate_checks() -> Iterator[Check]:
    yield Check(
        name="validate-script",
        summary="The role's validate.sh exits 0",
        run=run,
        config_type=ValidateScriptOptions,
        applies=applies,
    )
