"""The public plugin API: what it exports, the old import paths, the narrow
protocols, and the import graph of the contract (no cycles, plugins inside
the public API)."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

import fleetcore.plugin
from fleetcore.agent.drift import RepairKit as AgentRepairKit
from fleetcore.plugin import (
    ControlServerSecrets,
    DeviceInfo,
    RepairKit,
    SecretsContext,
    hookimpl,
)
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import Fetcher, RolloutStrategy

ROOT = Path(__file__).resolve().parents[1]

# Where each name could be imported from before the contract was split; third
# parties import them from there, so every one must keep working.
OLD_PATHS = {
    "fleetcore.plugin.types": [
        "NoOptions",
        "DeviceInfo",
        "SourceSettings",
        "Fetcher",
        "Activator",
        "SecretsProvider",
        "RolloutStrategy",
        "EventChannel",
        "CheckKind",
        "Finding",
        "CheckContext",
        "Check",
        "DriftFix",
        "UpdateResult",
        "UpdateStart",
        "UpdateRecord",
        "DriftReport",
        "ModeChange",
    ],
    "fleetcore.fetch.interface": ["Fetched", "Source", "Manifest"],
    "fleetcore.activate.interface": [
        "ActivationContext",
        "ActivatorImpl",
        "ENV_FILE",
        "project_name",
        "DeviceInfo",
    ],
    "fleetcore.secrets.interface": ["SecretsContext", "SecretsProviderImpl", "DeviceInfo"],
    "fleetcore.rollout.interface": ["Strategy", "DeviceInfo"],
    "fleetcore.channels.interface": ["EVENT_NAMES", "EventPublisher", "EventSubscriber"],
    "fleetcore.alerts.interface": ["Alert", "AlertChannel", "AlertSender"],
    "fleetcore.server.events": ["Event", "EventHub"],
    "fleetcore.policy": ["percentage_bucket", "resolve"],
    "fleetcore.config.agent": ["SEGMENTS"],
    "fleetcore.plugin": ["hookimpl"],
}


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_names_stay_where_they_were(module: str) -> None:
    mod = importlib.import_module(module)
    for name in OLD_PATHS[module]:
        assert hasattr(mod, name), f"{module}.{name} is gone"


def test_one_object_under_every_name() -> None:
    for name in fleetcore.plugin.__all__:
        value = getattr(fleetcore.plugin, name)
        for module in OLD_PATHS:
            if not module.startswith(
                (
                    "fleetcore.plugin",
                    "fleetcore.fetch",
                    "fleetcore.activate",
                    "fleetcore.secrets",
                    "fleetcore.rollout",
                    "fleetcore.channels",
                    "fleetcore.alerts",
                )
            ):
                continue
            other = getattr(importlib.import_module(module), name, value)
            assert other is value, f"{module}.{name} is not fleetcore.plugin.{name}"
    from fleetcore.config.agent import SEGMENTS
    from fleetcore.policy import percentage_bucket
    from fleetcore.server.events import Event

    assert Event is fleetcore.plugin.Event
    assert SEGMENTS is fleetcore.plugin.SEGMENTS
    assert percentage_bucket is fleetcore.plugin.percentage_bucket


def test_public_modules_export_what_they_list() -> None:
    for module in (
        "fleetcore.plugin",
        "fleetcore.plugin.types",
        "fleetcore.plugin.options",
        "fleetcore.plugin.release",
        "fleetcore.fetch.interface",
        "fleetcore.activate.interface",
        "fleetcore.secrets.interface",
        "fleetcore.rollout.interface",
        "fleetcore.channels.interface",
        "fleetcore.alerts.interface",
    ):
        mod = importlib.import_module(module)
        for name in mod.__all__:
            assert hasattr(mod, name), f"{module}.__all__ names {name}, which it lacks"


def test_public_api_is_documented() -> None:
    guide = (ROOT / "docs/plugins.md").read_text()
    section = guide[guide.index("## Public API") :]
    for name in fleetcore.plugin.__all__:
        assert f"`{name}`" in section, f"{name} is not in the Public API section"


class FakeClient:
    """A device's server client: far more than a secrets provider may use."""

    def __init__(self) -> None:
        self.enrolled = False

    def secrets(self) -> Mapping[str, str]:
        return {"API_TOKEN": "s3cret"}

    def enroll(self) -> None:
        self.enrolled = True


def test_secrets_context_narrows_the_server_client(tmp_path: Path) -> None:
    client = FakeClient()
    ctx = SecretsContext(
        device=DeviceInfo(device_id="d1", role="web"),
        release_dir=tmp_path,
        commit="c" * 40,
        state_dir=tmp_path,
        server=client,
    )
    assert ctx.server is not None
    assert ctx.server.secrets() == {"API_TOKEN": "s3cret"}
    assert not hasattr(ctx.server, "enroll")
    assert "s3cret" not in repr(ctx)
    server: ControlServerSecrets = ctx.server
    assert server is ctx.server
    no_server = SecretsContext(
        device=DeviceInfo(device_id="d1", role="web"),
        release_dir=tmp_path,
        commit="c" * 40,
        state_dir=tmp_path,
    )
    assert no_server.server is None


def test_the_agents_repair_kit_has_what_the_protocol_lists() -> None:
    wanted = {n for n in vars(RepairKit) if not n.startswith("_")}
    assert wanted == {"pristine", "restart", "clean"}
    for name in wanted:
        assert callable(getattr(AgentRepairKit, name)), name


class Records:
    @hookimpl
    def fleetcore_register_fetchers(self):
        yield Fetcher(name="f", summary="a fetcher", factory=lambda _s, _o: None)

    @hookimpl
    def fleetcore_register_rollout_strategies(self):
        yield RolloutStrategy(name="r", summary="a strategy", factory=lambda _o: None)


def test_typed_registries_are_the_registries_by_kind() -> None:
    pm = PluginManager(entry_points=False)
    pm.register(Records(), name="records")
    assert pm.fetchers() is pm.registry("fetcher")
    assert pm.fetchers().names() == ["f"]
    assert pm.rollout_strategies().names() == ["r"]
    assert pm.activators() is pm.registry("activator")
    assert pm.secrets_providers() is pm.registry("secrets provider")
    assert pm.event_channels() is pm.registry("event channel")
    assert pm.alert_channels() is pm.registry("alert channel")
    assert pm.checks("health") is pm.registry("health check")
    assert pm.drift_fixes() is pm.registry("drift fix")
    assert [r.name for r in pm.fetchers()] == ["f"]


CONTRACT = [
    "fleetcore.model",
    "fleetcore.errors",
    "fleetcore.release",
    "fleetcore.plugin.protocols",
    "fleetcore.plugin.types",
    "fleetcore.fetch.interface",
    "fleetcore.activate.interface",
    "fleetcore.secrets.interface",
    "fleetcore.rollout.interface",
    "fleetcore.channels.interface",
    "fleetcore.alerts.interface",
]


def test_the_plugin_contract_imports_downward_only() -> None:
    import grimp  # with import-linter, in the dev extra

    graph = grimp.build_graph("fleetcore")  # TYPE_CHECKING imports included
    for module in CONTRACT:
        for imported in graph.find_modules_directly_imported_by(module):
            assert not graph.chain_exists(importer=imported, imported=module), (
                f"{module} -> {imported} closes a cycle"
            )
    assert graph.find_modules_directly_imported_by("fleetcore.model") == set()


def test_plugins_import_only_the_public_api() -> None:
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    out = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout[-3000:]
