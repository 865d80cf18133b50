"""The plugin manager: discovery, disabling, duplicates, unknown names, isolation."""

from __future__ import annotations

import logging
import sys
import types
from importlib import metadata
from pathlib import Path

import pytest
from attrs import frozen

from fleetcore.checks import runner
from fleetcore.config.convert import between, checked
from fleetcore.config.role import CheckSelection
from fleetcore.errors import ConfigError, PluginError, UnknownPluginError
from fleetcore.plugin import discovery, hookimpl
from fleetcore.plugin.manager import DISABLE_ENV, PluginManager
from fleetcore.plugin.types import Check, CheckContext, DeviceInfo, Finding, RolloutStrategy


@frozen(kw_only=True)
class PercentOptions:
    percent: int = 0


class Strategies:
    @hookimpl
    def fleetcore_register_rollout_strategies(self):
        yield RolloutStrategy(name="everyone", summary="all devices", factory=lambda _o: None)


class SameName:
    @hookimpl
    def fleetcore_register_rollout_strategies(self):
        return [RolloutStrategy(name="everyone", summary="again", factory=lambda _o: None)]


def manager(*plugins: object) -> PluginManager:
    pm = PluginManager(entry_points=False)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"p{i}-{type(plugin).__name__.lower()}")
    return pm


def test_records_are_listed_by_plugin() -> None:
    pm = manager(Strategies())
    [info] = pm.plugins()
    assert info.provides == {"rollout strategy": ("everyone",)}
    assert info.hooks == ("fleetcore_register_rollout_strategies",)


def test_duplicate_names_are_an_error_naming_both_plugins() -> None:
    pm = manager(Strategies(), SameName())
    with pytest.raises(PluginError, match="registered by both p0-strategies and p1-samename"):
        pm.registry("rollout strategy")


def test_unknown_name_lists_the_installed_ones() -> None:
    pm = manager(Strategies())
    with pytest.raises(UnknownPluginError) as info:
        pm.registry("rollout strategy").get(
            "everyon", where="rollout.strategy", source="fleet.toml"
        )
    assert str(info.value) == (
        "fleet.toml: unknown rollout strategy 'everyon' @ rollout.strategy;"
        " installed: everyone; see `fleetcore plugins`"
    )


def test_misspelt_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def fleetcore_register_fetcher(self):  # missing the final s
            return []

    with pytest.raises(PluginError, match="fleetcore_register_fetcher"):
        manager(Typo())


def test_a_register_hook_that_raises_does_not_hide_the_others() -> None:
    class Broken:
        @hookimpl
        def fleetcore_register_rollout_strategies(self):
            raise RuntimeError("boom")

    pm = manager(Strategies(), Broken())
    assert pm.registry("rollout strategy").names() == ["everyone"]
    statuses = {i.name: (i.status, i.error) for i in pm.plugins()}
    assert statuses["p1-broken"][0] == "failed" and "boom" in statuses["p1-broken"][1]


def test_options_errors_name_the_key() -> None:
    @frozen(kw_only=True)
    class Options:
        percent: int = 0

    record = RolloutStrategy(name="p", summary="", factory=lambda o: o, config_type=Options)
    with pytest.raises(ConfigError, match=r"unknown keys \(precent\) @ roles.web.rollout"):
        PluginManager(entry_points=False).options(
            record, {"precent": 5}, where="roles.web.rollout", source="fleet.toml"
        )


def test_checked_validator_message_and_path() -> None:
    @frozen(kw_only=True)
    class Options:
        percent: int = 0

        def __attrs_post_init__(self) -> None:
            checked(between(0, 100))(
                self, type("A", (), {"name": "percent", "type": int}), self.percent
            )

    record = RolloutStrategy(name="p", summary="", factory=lambda o: o, config_type=Options)
    with pytest.raises(ConfigError, match="percent must be between 0 and 100, got 150"):
        PluginManager(entry_points=False).options(
            record, {"percent": 150}, where="rollout", source="fleet.toml"
        )


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, eps: list[tuple[str, str]]) -> None:
    module = types.ModuleType("fleetcore_fake_plugin")
    module.fleetcore_register_rollout_strategies = hookimpl(  # type: ignore[attr-defined]
        lambda: [RolloutStrategy(name="fake", summary="", factory=lambda _o: None)]
    )
    monkeypatch.setitem(sys.modules, "fleetcore_fake_plugin", module)
    objs = [
        discovery.EntryPoint(name, value, distribution=f"pkg-{name}", version="9.9")
        for name, value in eps
    ]
    monkeypatch.setattr(
        discovery,
        "entry_points",
        lambda group, path=None: [e for e in objs if group == "fleetcore"],
    )


def test_entry_points_load_one_by_one_and_failures_are_shown(monkeypatch, caplog) -> None:
    fake_entry_points(
        monkeypatch, [("good", "fleetcore_fake_plugin"), ("broken", "fleetcore_no_such_module_x")]
    )
    with caplog.at_level(logging.WARNING):
        pm = PluginManager()
    infos = {i.name: i for i in pm.plugins()}
    assert infos["good"].status == "active"
    assert infos["good"].provides == {"rollout strategy": ("fake",)}
    assert infos["broken"].status == "failed"
    assert "ModuleNotFoundError" in (infos["broken"].error or "")
    assert "broken failed to load" in caplog.text


def test_disabled_by_config_and_by_environment(monkeypatch) -> None:
    fake_entry_points(monkeypatch, [("good", "fleetcore_fake_plugin")])
    assert PluginManager(disabled=["good"]).registry("rollout strategy").names() == []
    monkeypatch.setenv(DISABLE_ENV, "other, good")
    pm = PluginManager()
    assert [(i.name, i.status) for i in pm.plugins()] == [("good", "disabled")]
    assert "fake" not in pm.registry("rollout strategy")


def test_lifecycle_observer_that_raises_does_not_stop_others(caplog) -> None:
    seen = []

    class Bad:
        @hookimpl
        def fleetcore_mode_changed(self, change):
            raise RuntimeError("observer broke")

    class Good:
        @hookimpl
        def fleetcore_mode_changed(self, change):
            seen.append(change)

    pm = manager(Bad(), Good())
    with caplog.at_level(logging.ERROR):
        pm.notify("fleetcore_mode_changed", change="x")
    assert seen == ["x"]
    assert "observer broke" in caplog.text


def ctx(tmp_path: Path) -> CheckContext:
    return CheckContext(
        kind="health",
        device=DeviceInfo(device_id="d", role="web"),
        release_dir=tmp_path,
        commit="c" * 40,
        manifest=None,
        options=None,
        log=logging.getLogger("test"),
    )


class Checks:
    @hookimpl
    def fleetcore_register_health_checks(self):
        yield Check(name="ok", summary="", run=lambda c: [])
        yield Check(name="raises", summary="", run=lambda c: 1 / 0)
        yield Check(name="finds", summary="", run=lambda c: [Finding(message="bad", subject="x")])
        yield Check(name="not-here", summary="", run=lambda c: [], applies=lambda c: False)
        yield Check(name="opt-in", summary="", run=lambda c: [], default=False)


def test_runner_isolates_a_crashing_check(tmp_path: Path) -> None:
    pm = manager(Checks())
    selected = runner.select(pm, "health", CheckSelection(), ctx(tmp_path), source="role.toml")
    assert [s.check.name for s in selected] == ["finds", "ok", "raises"]
    outcomes = {o.name: o for o in runner.run(selected, ctx(tmp_path))}
    assert outcomes["ok"].passed
    assert outcomes["raises"].crashed
    assert "ZeroDivisionError" in outcomes["raises"].findings[0].message
    assert str(outcomes["finds"].findings[0]) == "x: bad"


def test_runner_selection_by_name_skip_and_unknown(tmp_path: Path) -> None:
    pm = manager(Checks())
    chosen = runner.select(
        pm,
        "health",
        CheckSelection(checks=("opt-in", "ok"), skip=("ok",)),
        ctx(tmp_path),
        source="role.toml",
    )
    assert [s.check.name for s in chosen] == ["opt-in"]
    with pytest.raises(UnknownPluginError, match=r"unknown health check 'nope' @ health.nope"):
        runner.select(
            pm, "health", CheckSelection(skip=("nope",)), ctx(tmp_path), source="role.toml"
        )


def dist_info(folder: Path, name: str, version: str, entry_points: str | None) -> None:
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nName: not this one\n"
    )
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)


def test_discovery_reads_what_importlib_metadata_reads(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    dist_info(
        first,
        "fleetcore-alpha",
        "1.0",
        "[console_scripts]\nalpha = alpha:main\n\n[fleetcore]\n# a comment\n"
        "alpha = alpha.plugin\nalpha-extra = alpha.more:obj.attr [extra]\n",
    )
    dist_info(first, "Fleetcore.Beta", "2.0", None)  # no entry points at all
    dist_info(second, "fleetcore_alpha", "0.9", "[fleetcore]\nold = alpha_old\n")  # shadowed
    dist_info(second, "fleetcore-beta", "1.0", "[fleetcore]\nbeta = beta\n")  # shadowed too
    dist_info(second, "gamma", "3", "[fleetcore]\ngamma = gamma:plugin\n[other]\nx = y\n")
    path = [str(first), str(second), str(tmp_path / "missing"), str(tmp_path / "a.zip")]
    ours = discovery.entry_points("fleetcore", path)
    # As importlib.metadata.entry_points(): the first distribution of a
    # (normalised) name on the path wins, with or without entry points.
    assert [(ep.name, ep.value, ep.distribution) for ep in ours] == [
        ("alpha", "alpha.plugin", "fleetcore-alpha"),
        ("alpha-extra", "alpha.more:obj.attr", "fleetcore-alpha"),
        ("gamma", "gamma:plugin", "gamma"),
    ]
    assert [(ep.name, ep.version) for ep in ours] == [
        ("alpha", "1.0"),
        ("alpha-extra", "1.0"),
        ("gamma", "3"),
    ]


def test_discovery_finds_the_installed_plugins_as_importlib_metadata_does() -> None:
    ours = {
        (ep.name, ep.value, ep.distribution, ep.version)
        for ep in discovery.entry_points("fleetcore")
    }
    theirs = {
        (ep.name, ep.value, ep.dist.metadata["Name"], ep.dist.version)  # type: ignore[union-attr]
        for ep in metadata.entry_points(group="fleetcore")
    }
    assert ours == theirs


def test_an_entry_point_loads_its_object() -> None:
    ep = discovery.EntryPoint("x", "fleetcore.plugin.manager:PluginManager.plugins")
    assert ep.load() is PluginManager.plugins
    assert discovery.EntryPoint("y", "fleetcore.plugin.discovery").load() is discovery
    assert ep.distribution is None and ep.version is None


def test_the_agent_does_not_import_importlib_metadata() -> None:
    import subprocess

    code = (
        "import sys\n"
        "from fleetcore.plugin.manager import PluginManager\n"
        "PluginManager().registry('fetcher')\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
