"""The desired state of a device: what it should run, and why.

Git-only mode reads the fleet policy (``fleet.toml``, ``devices/<id>.toml``)
at the head of the configured branch and resolves it here, with the rollout
strategies installed on the device. Managed mode asks the control server,
and double-checks a rollout's answer with the same strategy run locally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

from fleetcore.agent.context import AgentContext
from fleetcore.agent.protection import commit_time
from fleetcore.agent.retry import retry
from fleetcore.config.role import RoleConfig, parse_role_config
from fleetcore.plugin.types import DeviceInfo
from fleetcore.policy import DesiredState, resolve
from fleetcore.rollout.select import RolloutStrategies

if TYPE_CHECKING:
    from fleetcore.config.fleet import DevicePolicy, FleetPolicy
    from fleetcore.fetch.interface import Source

log = logging.getLogger("fleetcore.agent")


class Desired:
    """Reads the desired state, and the role's config at a commit."""

    def __init__(self, ctx: AgentContext, strategies: RolloutStrategies) -> None:
        self.ctx = ctx
        self.strategies = strategies
        self.fresh = False
        """Set when woken by a server event or SIGHUP: the next question to the
        server goes without the ETag, so no cached answer can hide a change."""
        self._head_seen: str | None = None
        self._role_at_head: tuple[str, bytes | None] | None = None

    def read(self) -> tuple[DesiredState, str]:
        """The desired state (from the server, or from the head of the configured
        branch), and the head it was computed for."""
        ctx = self.ctx
        if ctx.client is not None:
            fresh, self.fresh = self.fresh, False
            desired = retry(
                ctx, "ask the server for the desired state", lambda: ctx.client.desired(fresh=fresh)
            )
            return self.double_check(desired), desired.commit or ""
        # Git-only mode: imported here, managed devices never parse the fleet policy.
        from fleetcore.config.fleet import parse_device_policy, parse_fleet_policy

        source = ctx.source()
        branch = ctx.config.source.branch if ctx.config.source else "main"
        head = retry(ctx, "resolve the branch head", lambda: source.head(branch))
        device_file = f"devices/{ctx.device.device_id}.toml"
        # The role's config at the head comes along: most updates go to the head.
        files = retry(
            ctx,
            "read the fleet policy",
            lambda: source.read(head, ["fleet.toml", device_file, ctx.role_file]),
        )
        self._role_at_head = (head, files.get(ctx.role_file))
        at = f"@{head[:12]}"
        fleet = parse_fleet_policy(files.get("fleet.toml"), f"fleet.toml{at}")
        device_policy = parse_device_policy(files.get(device_file), f"{device_file}{at}")
        desired = self._resolve(ctx, fleet, device_policy, head, at, source)
        if ctx.config.verify.max_age is not None:
            # Freshness: how old the head is, from its commit object.
            desired = attrs.evolve(desired, issued_at=commit_time(source, head, ctx.device.role))
        return desired, head

    def _resolve(
        self,
        ctx: AgentContext,
        fleet: FleetPolicy,
        device_policy: DevicePolicy,
        head: str,
        at: str,
        source: Source,
    ) -> DesiredState:
        return resolve(
            device=ctx.device,
            fleet=fleet,
            device_policy=device_policy,
            head=head,
            now=ctx.clock.now(),
            eligible=self._eligibility(fleet, at),
            override_head=lambda branch: retry(
                ctx, f"resolve branch {branch}", lambda: source.head(branch)
            ),
        )

    def double_check(self, desired: DesiredState) -> DesiredState:
        """Managed mode: a rollout's commit is taken only if the same strategy
        plugin, run here, agrees that this device is eligible."""
        if desired.why != "rollout" or not desired.commit or not desired.rollout_strategy:
            return desired
        name = desired.rollout_strategy
        if name not in self.strategies:
            log.warning(
                "cannot double-check the server's %s rollout: the strategy is not installed here",
                name,
            )
            return desired
        strategy = self.strategies.get(
            name,
            desired.rollout_options or {},
            "rollout",
            name_where="rollout.strategy",
            source="the server's desired state",
        )
        if strategy.eligible(self.ctx.device, desired.commit):
            return desired
        reason = (
            f"the server named {desired.commit[:12]}, but by its {name} rollout "
            f"this device is not eligible; holding"
        )
        log.error("%s", reason)
        return attrs.evolve(desired, commit=None, why="hold", reason=reason)

    def _eligibility(self, fleet: FleetPolicy, at: str) -> Callable[[str, DeviceInfo, str], bool]:
        def eligible(name: str, device: DeviceInfo, commit: str) -> bool:
            where = "rollout" if device.role not in fleet.roles else f"roles.{device.role}.rollout"
            strategy = self.strategies.get(
                name,
                fleet.rollout_for(device.role).options,
                where,
                name_where=f"{where}.strategy",
                source=f"fleet.toml{at}",
            )
            return bool(strategy.eligible(device, commit))

        return eligible

    def role_config(self, commit: str) -> RoleConfig:
        """The role's role.toml at ``commit`` (read with the policy when it is
        the head). Raises FetchError or ConfigError."""
        role_file = self.ctx.role_file
        if self._role_at_head is not None and self._role_at_head[0] == commit:
            role_text = self._role_at_head[1]
        else:
            role_text = self.ctx.source().read(commit, [role_file]).get(role_file)
        return parse_role_config(role_text, f"{role_file}@{commit[:12]}")

    def deploying(self, head: str | None) -> None:
        """An update starts from the policy read at ``head`` (None: an override,
        which a new head does not change)."""
        self._head_seen = head

    def latest(self) -> DesiredState | None:
        """The desired state asked again (after an update), or None when the
        branch head has not moved since the policy was read."""
        ctx = self.ctx
        if ctx.client is not None:
            answer: DesiredState = ctx.client.desired()
            return answer
        if (
            self._head_seen is not None
            and ctx.config.source is not None
            and ctx.source().head(ctx.config.source.branch) == self._head_seen
        ):
            return None  # nothing landed: the policy read at the start still holds
        desired, _ = self.read()
        return desired
