"""Run with only the core installed (`make test-core`): no plugin at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def fleetcore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleetcore.cli.main", *args], capture_output=True, text=True
    )


def test_the_core_lists_no_plugin() -> None:
    from fleetcore.plugin.manager import PluginManager

    assert PluginManager().plugins() == []
    assert fleetcore("plugins", "--json").stdout.strip() == "[]"
    assert "pip install 'fleetcore[device]'" in fleetcore("plugins").stdout


def test_selecting_a_missing_plugin_names_it(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'device_id = "pi-1"\nrole = "web"\nstate_dir = "s"\n'
        '[source]\nrepo = "/srv/fleet"\nfetcher = "git"\n'
    )
    result = fleetcore("agent", "once", "--config", str(config))
    assert result.returncode == 2
    assert "unknown fetcher 'git' @ source.fetcher; installed: none" in result.stderr


def test_an_event_channel_needs_its_plugin(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'device_id = "pi-1"\nrole = "web"\nstate_dir = "s"\n'
        '[server]\nurl = "http://127.0.0.1:9"\nevents = "mqtt"\n'
        '[events.mqtt]\nurl = "mqtt://broker"\n'
    )
    result = fleetcore("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert "unknown event channel 'mqtt' @ server.events; installed: none" in result.stdout + (
        result.stderr
    )


def test_a_plugin_command_names_its_package() -> None:
    result = fleetcore("secrets", "keygen")
    assert result.returncode == 2
    assert (
        "No such command 'secrets': it is added by the plugin package fleetcore-age "
        "(pip install fleetcore-age, or fleetcore[device])"
    ) in result.stderr
    assert "secrets" not in fleetcore("--help").stdout
