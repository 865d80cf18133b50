"""Picking the activator of a role's release and building it.

``role.toml`` may name one (``[activate] plugin``, with options); otherwise
the installed activators are asked, highest priority first, whether they fit
the release folder (a compose file, an ``activate.sh``, ...).
"""

from __future__ import annotations

from pathlib import Path

from fleetcore.activate.interface import ActivatorImpl
from fleetcore.config.role import RoleConfig
from fleetcore.errors import FleetcoreError
from fleetcore.plugin.manager import PluginManager


class NoActivator(FleetcoreError):
    """No installed activator fits the release, and the role names none."""


def activator_name(pm: PluginManager, release_dir: Path, role_cfg: RoleConfig) -> str:
    """The activator for this release: the one ``role.toml`` names, or the
    first installed one (by priority) that detects the release."""
    name = role_cfg.activate.plugin
    if name is not None:
        return name
    registry = pm.registry("activator")
    for record in sorted(registry, key=lambda r: -r.priority):
        if record.detect is not None and record.detect(release_dir):
            return str(record.name)
    raise NoActivator(
        f"no activator fits {release_dir.name}: add docker-compose.yml or activate.sh, "
        f"or name one in role.toml [activate] plugin; installed: "
        f"{', '.join(registry.names()) or 'none'}"
    )


def build_activator(
    pm: PluginManager, name: str, role_cfg: RoleConfig | None, *, source: str
) -> ActivatorImpl:
    """The activator ``name``, with the role's ``[activate]`` options (none
    when ``role_cfg`` is None) checked by the plugin's own type."""
    record = pm.registry("activator").get(name, where="activate.plugin", source=source)
    options = pm.options(
        record,
        role_cfg.activate.options if role_cfg is not None else None,
        where="activate",
        source=source,
    )
    activator: ActivatorImpl = record.factory(options)
    return activator


def select_activator(
    pm: PluginManager, release_dir: Path, role_cfg: RoleConfig, *, source: str
) -> tuple[str, ActivatorImpl]:
    """The activator for a release, by name and built."""
    name = activator_name(pm, release_dir, role_cfg)
    return name, build_activator(pm, name, role_cfg, source=source)
