from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetcore.config.convert import structure
from fleetcore.config.role import parse_role_config
from fleetcore.config.units import Duration
from fleetcore.errors import ConfigError
from fleetcore.plugin.types import CheckContext, DeviceInfo, Finding
from fleetcore.testing.contracts import check_check_record, check_entry_point
from fleetcore.testing.services import free_port
from fleetcore_example import plugin
from fleetcore_example.plugin import TcpPortOptions


def record():
    (rec,) = plugin.fleetcore_register_health_checks()
    return rec


def run(options: TcpPortOptions, tmp_path: Path) -> list[Finding]:
    ctx = CheckContext(
        kind="health",
        device=DeviceInfo(device_id="broker-1", role="broker"),
        release_dir=tmp_path,
        commit="0" * 40,
        manifest=None,
        options=options,
        log=logging.getLogger("test"),
    )
    return list(record().run(ctx) or [])


@pytest.fixture
def listening() -> Iterator[int]:
    """A real listening socket on 127.0.0.1; yields its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_record_keeps_the_check_contract():
    options = check_check_record(record(), example={"port": 8080})
    assert options == TcpPortOptions(port=8080, host="127.0.0.1", timeout=Duration(3.0))


def test_runs_only_when_a_role_selects_it():
    rec = record()
    assert rec.default is False
    assert rec.applies is None


def test_passes_when_the_port_accepts_connections(listening, tmp_path):
    assert run(TcpPortOptions(port=listening), tmp_path) == []


def test_fails_when_nothing_listens(tmp_path):
    port = free_port()
    assert run(TcpPortOptions(port=port), tmp_path) == [
        Finding(message="connection refused", subject=f"127.0.0.1:{port}")
    ]


def test_options_from_role_toml(listening, tmp_path):
    role = parse_role_config(
        f'[health]\nchecks = ["tcp-port"]\n\n[health.tcp-port]\nport = {listening}\n'.encode(),
        "roles/broker/role.toml",
    )
    assert role.health.checks == ("tcp-port",)
    options = structure(
        role.health.options["tcp-port"],
        TcpPortOptions,
        source="roles/broker/role.toml",
        root="health.tcp-port",
    )
    assert run(options, tmp_path) == []


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({}, "required key missing @ health.tcp-port.port"),
        ({"port": 0}, "port must be between 1 and 65535, got 0 @ health.tcp-port.port"),
        ({"port": 70000}, "port must be between 1 and 65535, got 70000 @ health.tcp-port.port"),
        ({"port": "8080"}, "expected a whole number, got '8080' @ health.tcp-port.port"),
        (
            {"port": 80, "timeout": "0s"},
            "timeout must be longer than 0s, got 0s @ health.tcp-port.timeout",
        ),
        ({"port": 80, "hots": "x"}, "unknown keys (hots) @ health.tcp-port"),
    ],
)
def test_option_errors_name_the_key(table, problem):
    with pytest.raises(ConfigError) as caught:
        structure(table, TcpPortOptions, source="roles/broker/role.toml", root="health.tcp-port")
    assert caught.value.problems == (problem,)


def test_registered_through_its_entry_point():
    info = check_entry_point("tcp-port", {"health check": ["tcp-port"]})
    assert info.distribution == "fleetcore-example"
