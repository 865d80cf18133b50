"""``[events.mqtt]`` and ``--events mqtt://...``: every mistake named with its key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleetcore.config.convert import structure
from fleetcore.config.units import Duration
from fleetcore.config_check import check_agent_config
from fleetcore.errors import ConfigError
from fleetcore.plugin.manager import PluginManager
from fleetcore_mqtt.options import MqttOptions


def test_defaults() -> None:
    opts = structure({"url": "mqtts://broker.example.com"}, MqttOptions, source="t")
    assert (opts.host, opts.port, opts.tls, opts.topic_prefix) == (
        "broker.example.com",
        8883,
        True,
        "fleetcore",
    )
    assert opts.keepalive == Duration(60.0)
    assert structure({"url": "mqtt://10.0.0.5"}, MqttOptions, source="t").port == 1883


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({}, "required key missing @ events.mqtt.url"),
        (
            {"url": "http://broker"},
            "url must look like mqtt://HOST[:PORT] or mqtts://HOST[:PORT] @ events.mqtt.url",
        ),
        (
            {"url": "mqtt://broker:99999"},
            "url has a bad port: 'mqtt://broker:99999' @ events.mqtt.url",
        ),
        (
            {"url": "mqtt://me:secret@broker"},
            "url must not hold credentials: give username and password_file @ events.mqtt.url",
        ),
        (
            {"url": "mqtt://broker", "topic_prefix": "fleet/#"},
            "topic_prefix must be a topic like 'fleetcore' or 'site-a/fleetcore' (no wildcards, "
            "no leading or trailing '/'), got 'fleet/#' @ events.mqtt.topic_prefix",
        ),
        (
            {"url": "mqtt://broker", "ca_file": "/etc/hostname"},
            "ca_file needs an mqtts:// url @ events.mqtt.ca_file",
        ),
        (
            {"url": "mqtts://broker", "ca_file": "/no/such/ca.pem"},
            "ca_file '/no/such/ca.pem' is not a file @ events.mqtt.ca_file",
        ),
        (
            {"url": "mqtt://broker", "password": "x", "password_file": "/etc/hostname"},
            "give password or password_file, not both @ events.mqtt.password_file",
        ),
        (
            {"url": "mqtt://broker", "keepalive": "1s"},
            "keepalive must be between 5s and 65535s, got 1s @ events.mqtt.keepalive",
        ),
        ({"url": "mqtt://broker", "qos": 2}, "unknown keys (qos) @ events.mqtt"),
    ],
)
def test_option_errors_name_the_key(table: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        structure(table, MqttOptions, source="agent.toml", root="events.mqtt")
    assert caught.value.problems == (problem,)


AGENT = """\
device_id = "pi-1"
role = "web"
state_dir = "state"
[server]
url = "http://127.0.0.1:9"
events = {events}
"""


@pytest.mark.parametrize(
    ("events", "table", "problems"),
    [
        ('"mqtt"', '[events.mqtt]\nurl = "mqtt://broker"\n', []),
        ("true", "", []),
        ("false", "", []),
        ('"mqtt"', "", ["required key missing @ events.mqtt.url"]),
        (
            '"mqtt"',
            '[events.mqtt]\nurl = "mqtt://broker"\ntopic-prefix = "x"\n',
            ["unknown keys (topic-prefix) @ events.mqtt"],
        ),
        (
            '"nats"',
            "",
            [
                "unknown event channel 'nats' @ server.events; installed: mqtt; "
                "see `fleetcore plugins`"
            ],
        ),
    ],
)
def test_config_check_reports_the_agents_channel(
    tmp_path: Path, events: str, table: str, problems: list[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(AGENT.format(events=events) + table)
    assert check_agent_config(path, PluginManager()) == [f"{path}: {p}" for p in problems]


def server_run(tmp_path: Path, *events: str) -> subprocess.CompletedProcess[str]:
    args = [a for value in events for a in ("--events", value)]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetcore",
            "server",
            "run",
            "--data-dir",
            str(tmp_path),
            "--repo",
            str(tmp_path / "none"),
            "--listen",
            "127.0.0.1:9",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_server_refuses_a_channel_it_does_not_have(tmp_path: Path) -> None:
    result = server_run(tmp_path, "mqtt://broker:1883", "nats://broker:4222")
    assert result.returncode == 2
    assert (
        "Invalid value for --events: unknown event channel 'nats://'; "
        "installed: mqtt (mqtt://, mqtts://) (sse is always served)" in result.stderr
    )


def test_the_server_names_a_wrong_option_and_hides_the_password(tmp_path: Path) -> None:
    result = server_run(tmp_path, "mqtt://me:hunter2@broker:1883", "mqtt://broker?topic_prefx=x")
    assert result.returncode == 2
    assert "unknown keys (topic_prefx) @ mqtt" in result.stderr
    assert "url must not hold credentials" in result.stderr
    assert "hunter2" not in result.stderr
