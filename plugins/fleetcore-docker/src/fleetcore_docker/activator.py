"""The ``compose`` activator: a role's services are its compose file.

Every release of a role runs under one compose project, ``ctx.project``
(``fleetcore-<role>``). Starting a release is ``up -d --remove-orphans`` of
its compose file under that project, so Compose recreates the containers
whose configuration changed, keeps the others and removes services the
release no longer has. Going back to the previous release is the same
command with the previous compose file: an update and a rollback are one
operation.

Options, in ``[activate]`` of ``role.toml``::

    [activate]
    plugin = "compose"        # optional: a compose file selects it anyway
    command = "auto"          # or "docker compose", "docker-compose", a path
    pull = false              # pull images before starting (moving tags)
    timeout = "5m"            # for each Compose command
    stop_timeout = "10s"      # for containers to stop before they are killed
"""

from __future__ import annotations

import logging
import math

from fleetcore.activate.interface import ActivationContext, project_name
from fleetcore_docker.options import ComposeOptions

log = logging.getLogger(__name__)


def project_of(ctx: ActivationContext) -> str:
    return ctx.project or project_name(ctx.device)


class ComposeActivator:
    """Brings a release's compose services up (``start``) and down (``stop``)."""

    def __init__(self, options: ComposeOptions | None = None) -> None:
        self.options = options or ComposeOptions()

    def _run(self, ctx: ActivationContext, *args: str, what: str, check: bool = True) -> None:
        from fleetcore_docker import compose as cli

        compose = cli.resolve(self.options.command)
        argv = cli.command(compose, ctx.release_dir, *args, project=project_of(ctx))
        what = f"`{' '.join(compose.argv)} {what}` of project {project_of(ctx)}"
        proc = cli.run(
            argv, cwd=ctx.release_dir, env=ctx.env, timeout=self.options.timeout.seconds, what=what
        )
        if check:
            cli.check(proc, ctx.env, what=what)
        elif proc.returncode != 0:
            log.warning("%s failed, going on:\n%s", what, cli.error_output(proc, ctx.env))

    def _stop_timeout(self) -> str:
        return str(math.ceil(self.options.stop_timeout.seconds))

    def start(self, ctx: ActivationContext) -> None:
        """``up -d --remove-orphans`` of the release under the role's project.

        Works from any state: containers of the previous release are replaced
        where their configuration changed, services gone from the compose file
        are removed, and missing or stopped containers are created and started.
        """
        if self.options.pull:
            self._run(ctx, "pull", what="pull", check=False)
        self._run(
            ctx,
            "up",
            "-d",
            "--remove-orphans",
            "--timeout",
            self._stop_timeout(),
            what="up",
        )

    def stop(self, ctx: ActivationContext) -> None:
        """``down --remove-orphans``: remove the project's containers (named
        volumes stay: they hold the services' data)."""
        self._run(ctx, "down", "--remove-orphans", "--timeout", self._stop_timeout(), what="down")
