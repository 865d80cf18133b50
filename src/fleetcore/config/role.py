"""``roles/<role>/role.toml``: how a role is activated, validated and checked."""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

from fleetcore.config.convert import parse_toml, split_table, structure
from fleetcore.config.units import Duration

CHECK_TABLE_KEYS = ("checks", "skip")


@frozen(kw_only=True)
class CheckSelection:
    """``[validate]``, ``[health]`` or ``[drift]`` of a role.

    ``checks`` names the checks to run (default: every check that applies);
    ``skip`` names checks not to run; every sub-table holds one check's options.
    """

    checks: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()
    options: dict[str, dict[str, Any]] = field(factory=dict)


@frozen(kw_only=True)
class HealthSelection(CheckSelection):
    settle: Duration = Duration(30.0)
    """Wait after activation before the health checks (the seed's 30 seconds)."""
    attempts: int = 1
    """Rounds of health checks before giving up; a round passes when all checks pass."""
    interval: Duration = Duration(5.0)
    """Wait between rounds."""


@frozen(kw_only=True)
class PluginChoice:
    plugin: str | None = None
    options: dict[str, Any] = field(factory=dict)


@frozen(kw_only=True)
class SecretsChoice:
    providers: tuple[str, ...] | None = None
    options: dict[str, dict[str, Any]] = field(factory=dict)


@frozen(kw_only=True)
class RoleConfig:
    update_interval: Duration | None = None
    requires_reboot: bool = False
    """Updates of this role are applied only inside the maintenance window."""
    activate: PluginChoice = PluginChoice()
    validate: CheckSelection = CheckSelection()
    health: HealthSelection = HealthSelection()
    drift: CheckSelection = CheckSelection()
    secrets: SecretsChoice = SecretsChoice()


def _selection(table: Any, extra_core: tuple[str, ...] = ()) -> Any:
    if not isinstance(table, dict):
        return table
    core, rest = split_table(table, CHECK_TABLE_KEYS + extra_core)
    return {**core, "options": rest}


def parse_role_config(text: bytes | None, source: str) -> RoleConfig:
    if not text:
        return RoleConfig()
    data = parse_toml(text, source)
    if isinstance(data.get("activate"), dict):
        core, rest = split_table(data["activate"], ("plugin",))
        data["activate"] = {**core, "options": rest}
    if "validate" in data:
        data["validate"] = _selection(data["validate"])
    if "drift" in data:
        data["drift"] = _selection(data["drift"])
    if "health" in data:
        data["health"] = _selection(data["health"], ("settle", "attempts", "interval"))
    if isinstance(data.get("secrets"), dict):
        core, rest = split_table(data["secrets"], ("providers",))
        data["secrets"] = {**core, "options": rest}
    return structure(data, RoleConfig, source=source)
