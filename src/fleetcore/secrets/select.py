"""Picking the secrets providers of a role and building them.

``role.toml`` may list them (``[secrets] providers``); otherwise every
installed provider that detects the release takes part. Each provider gets
its device settings from ``agent.toml`` (``[secrets.NAME]``, checked by the
plugin's own type) and its role options from ``role.toml`` (structured into
the record's ``role_config_type``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from fleetcore.config.convert import structure
from fleetcore.config.role import RoleConfig
from fleetcore.plugin.manager import PluginManager
from fleetcore.secrets.interface import SecretsProviderImpl


@frozen(kw_only=True)
class SelectedProvider:
    """A secrets provider built for one role's release."""

    name: str
    provider: SecretsProviderImpl
    role_options: Any


def select_providers(
    pm: PluginManager,
    release_dir: Path,
    role_cfg: RoleConfig,
    device_settings: Mapping[str, Mapping[str, Any]],
    *,
    role_source: str,
    device_source: str,
) -> list[SelectedProvider]:
    """The role's secrets providers, in order, built with their device
    settings (errors name ``device_source``) and role options (errors name
    ``role_source``)."""
    registry = pm.registry("secrets provider")
    names = role_cfg.secrets.providers
    if names is None:
        names = tuple(r.name for r in registry if r.detect is not None and r.detect(release_dir))
    selected = []
    for name in names:
        record = registry.get(name, where="secrets.providers", source=role_source)
        # Device settings from agent.toml only; the role says what it wants.
        device_options = pm.options(
            record, device_settings.get(name), where=f"secrets.{name}", source=device_source
        )
        role_options = structure(
            dict(role_cfg.secrets.options.get(name) or {}),
            record.role_config_type,
            source=role_source,
            root=f"secrets.{name}",
        )
        selected.append(
            SelectedProvider(
                name=name, provider=record.factory(device_options), role_options=role_options
            )
        )
    return selected
