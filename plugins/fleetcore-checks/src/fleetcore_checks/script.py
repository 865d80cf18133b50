"""The ``script`` activator: roles that start their services with ``activate.sh``.

A role folder with an ``activate.sh`` is activated by running it, in the
release folder, after the agent switched the ``current`` link to it. The same
script brings the previous release back when the new one is unhealthy, so it
must work from any state: stop what an earlier release started, then start
this one (``docker run --replace``, ``systemctl restart``, a pid file...).

``deactivate.sh``, when the release has one, is run to stop the release: when
a role moves from this activator to another one, and when a first install
fails with nothing to go back to.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import field, frozen

from fleetcore.errors import FleetcoreError
from fleetcore.plugin import hookimpl
from fleetcore.plugin.options import Duration, checked
from fleetcore.plugin.types import Activator
from fleetcore_checks._options import positive_duration

if TYPE_CHECKING:
    from fleetcore.activate.interface import ActivationContext

log = logging.getLogger(__name__)

ACTIVATE = "activate.sh"
DEACTIVATE = "deactivate.sh"


@frozen(kw_only=True)
class ScriptOptions:
    """``[activate]`` keys of a role run by ``activate.sh``::

    [activate]
    plugin = "script"
    timeout = "10m"
    """

    timeout: Duration = field(default=Duration(300.0), validator=checked(positive_duration))
    """How long ``activate.sh`` (or ``deactivate.sh``) may run before it is
    stopped, with everything it started, and the activation counts as failed."""


class ScriptActivator:
    """Runs ``activate.sh`` to start a release and ``deactivate.sh`` to stop it.

    Either script failing (non-zero exit, timeout) raises a
    :class:`~fleetcore.errors.FleetcoreError` naming the script, its exit code
    and the last lines of its output; the agent then rolls back.
    """

    def __init__(self, options: ScriptOptions) -> None:
        self.options = options

    def start(self, ctx: ActivationContext) -> None:
        self._run(ctx, ACTIVATE)

    def stop(self, ctx: ActivationContext) -> None:
        if not (ctx.release_dir / DEACTIVATE).is_file():
            log.debug("no %s in %s: nothing to stop", DEACTIVATE, ctx.release_dir)
            return
        self._run(ctx, DEACTIVATE)

    def _run(self, ctx: ActivationContext, name: str) -> None:
        # Imported when a script runs: loading the plugin must stay cheap.
        from fleetcore_checks._scripts import run_script

        # ctx.env holds the role's secrets: it is passed on, never logged.
        log.info("running %s of %s", name, ctx.release_dir)
        result = run_script(ctx.release_dir, name, env=ctx.env, timeout=self.options.timeout)
        if not result.ok:
            raise FleetcoreError(result.message())


def has_activate_script(release_dir: Path) -> bool:
    return (release_dir / ACTIVATE).is_file()


@hookimpl
def fleetcore_register_activators() -> Iterator[Activator]:
    yield Activator(
        name="script",
        summary="Run the role's activate.sh (and deactivate.sh to stop it)",
        factory=ScriptActivator,
        config_type=ScriptOptions,
        detect=has_activate_script,
        priority=10,
    )
