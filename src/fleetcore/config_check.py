"""Static checks of configuration: everything an agent would trip over later."""

from __future__ import annotations

from pathlib import Path

from fleetcore.config.agent import load_agent_config
from fleetcore.config.fleet import parse_device_policy, parse_fleet_policy
from fleetcore.config.role import CheckSelection, parse_role_config
from fleetcore.errors import ConfigError
from fleetcore.plugin.manager import PluginManager


def _lines(exc: ConfigError) -> list[str]:
    return [f"{exc.source}: {p}" for p in exc.problems]


def check_agent_config(path: Path, pm: PluginManager) -> list[str]:
    try:
        config = load_agent_config(path)
    except ConfigError as exc:
        return _lines(exc)
    problems: list[str] = []
    try:
        from fleetcore.channels.select import agent_channel

        agent_channel(pm, config, str(path))
    except ConfigError as exc:
        problems += _lines(exc)
    if config.source is None:
        return problems
    try:
        record = pm.registry("fetcher").get(
            config.source.fetcher, where="source.fetcher", source=str(path)
        )
        pm.options(record, config.source.options, where="source", source=str(path))
    except ConfigError as exc:
        problems += _lines(exc)
    return problems


def check_fleet_repo(repo: Path, pm: PluginManager) -> tuple[list[str], list[str]]:
    checked: list[str] = []
    problems: list[str] = []
    fleet_file = repo / "fleet.toml"
    if fleet_file.exists():
        checked.append(str(fleet_file))
        try:
            fleet = parse_fleet_policy(fleet_file.read_bytes(), str(fleet_file))
            tables = [("rollout", fleet.rollout)] + [
                (f"roles.{name}.rollout", rp.rollout)
                for name, rp in fleet.roles.items()
                if rp.rollout is not None
            ]
            for where, rollout in tables:
                if rollout.strategy == "all":
                    continue
                try:
                    record = pm.registry("rollout strategy").get(
                        rollout.strategy, where=f"{where}.strategy", source=str(fleet_file)
                    )
                    pm.options(record, rollout.options, where=where, source=str(fleet_file))
                except ConfigError as exc:
                    problems += _lines(exc)
        except ConfigError as exc:
            problems += _lines(exc)
    for device_file in sorted((repo / "devices").glob("*.toml")):
        checked.append(str(device_file))
        try:
            parse_device_policy(device_file.read_bytes(), str(device_file))
        except ConfigError as exc:
            problems += _lines(exc)
    for role_dir in sorted(p for p in (repo / "roles").glob("*") if p.is_dir()):
        role_file = role_dir / "role.toml"
        source = str(role_file)
        checked.append(source if role_file.exists() else str(role_dir))
        try:
            role = parse_role_config(role_file.read_bytes() if role_file.exists() else None, source)
        except ConfigError as exc:
            problems += _lines(exc)
            continue
        problems += _check_role(role_dir, role, pm, source)
    return checked, problems


def _check_role(role_dir: Path, role: object, pm: PluginManager, source: str) -> list[str]:
    from fleetcore.config.role import RoleConfig

    assert isinstance(role, RoleConfig)
    problems: list[str] = []
    activators = pm.registry("activator")
    try:
        if role.activate.plugin is not None:
            record = activators.get(role.activate.plugin, where="activate.plugin", source=source)
            pm.options(record, role.activate.options, where="activate", source=source)
        elif not any(r.detect is not None and r.detect(role_dir) for r in activators):
            problems.append(
                f"{source}: no activator fits this role (add docker-compose.yml or "
                f"activate.sh, or set [activate] plugin); installed: "
                f"{', '.join(activators.names()) or 'none'}"
            )
    except ConfigError as exc:
        problems += _lines(exc)
    for kind, selection in (("validate", role.validate), ("health", role.health)):
        problems += _check_selection(pm, kind, selection, source)
    return problems


def _check_selection(
    pm: PluginManager, kind: str, selection: CheckSelection, source: str
) -> list[str]:
    problems = []
    registry = pm.registry(f"{kind} check")
    for name in {*(selection.checks or ()), *selection.skip, *selection.options}:
        try:
            record = registry.get(name, where=f"{kind}.{name}", source=source)
            pm.options(record, selection.options.get(name), where=f"{kind}.{name}", source=source)
        except ConfigError as exc:
            problems += _lines(exc)
    return problems
