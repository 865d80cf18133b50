"""Under systemd the agent logs to journald with DEVICE_ID, ROLE, COMMIT and
ENVIRONMENT fields; safe mode is CRITICAL (priority 2).

journald does not run here (systemd is not PID 1): the journal is a stand-in,
a datagram socket this test binds, read with the native protocol's rules
(``KEY=value`` lines, or ``KEY``, a 64-bit little-endian length and the
bytes for values with newlines). The agent is real, run as systemd would
run it: ``JOURNAL_STREAM`` names its stderr."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetcore.testing.gitrepo import FleetRepo, script_role


def parse_entry(packet: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    rest = packet
    while rest:
        line, sep, after = rest.partition(b"\n")
        assert sep, f"unterminated field in {packet!r}"
        if b"=" in line:
            name, _, value = line.partition(b"=")
            fields[name.decode()] = value.decode()
            rest = after
        else:
            (size,) = struct.unpack("<Q", after[:8])
            fields[line.decode()] = after[8 : 8 + size].decode()
            assert after[8 + size : 9 + size] == b"\n"
            rest = after[9 + size :]
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Callable[[], list[dict[str, str]]]]:
    path = tmp_path / "journal.socket"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)

    def entries() -> list[dict[str, str]]:
        found = []
        while True:
            try:
                found.append(parse_entry(sock.recv(1 << 20)))
            except BlockingIOError:
                return found

    yield entries
    sock.close()


def _run_as_systemd(config: Path, socket_path: Path, stderr: Path, env: dict[str, str]) -> Any:
    with stderr.open("wb") as err:
        st = os.fstat(err.fileno())
        return subprocess.run(
            [sys.executable, "-m", "fleetcore", "agent", "once", "--config", str(config)],
            stderr=err,
            env={
                **env,
                "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
                "FLEETCORE_JOURNAL_SOCKET": str(socket_path),
            },
            timeout=120,
        )


def test_the_agent_logs_fields_to_the_journal_and_safe_mode_is_critical(
    device: Callable[..., Any], fleet_repo: FleetRepo, journal: Any, tmp_path: Path
) -> None:
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device("pi-j", max_failures=1, extra='[labels]\nenvironment = "staging"\n')
    dev.agent().once()
    bad = fleet_repo.commit(script_role("v2", health="exit 1"), "bad")
    stderr = tmp_path / "stderr"
    _run_as_systemd(dev.config_path, tmp_path / "journal.socket", stderr, dict(os.environ))
    entries = journal()
    assert entries, "nothing reached the journal"
    assert stderr.read_text() == ""  # everything went to the journal
    for entry in entries:
        assert entry["DEVICE_ID"] == "pi-j"
        assert entry["ROLE"] == "web"
        assert entry["ENVIRONMENT"] == "staging"
        assert entry["SYSLOG_IDENTIFIER"] == "fleetcore"
        assert entry["PRIORITY"] in {"2", "3", "4", "6"}
    assert any(e.get("COMMIT") == bad for e in entries), entries
    critical = [e for e in entries if e["PRIORITY"] == "2"]
    assert [e["MESSAGE"].split(":")[0] for e in critical] == ["mode normal -> safe_mode"]


def test_a_redirected_stderr_keeps_the_logs_there(
    device: Callable[..., Any], fleet_repo: FleetRepo, journal: Any, tmp_path: Path
) -> None:
    """A child of a systemd service inherits JOURNAL_STREAM but not the stream:
    its logs stay on its own stderr."""
    fleet_repo.commit(script_role("v1"), "v1")
    dev = device("pi-k")
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        result = subprocess.run(
            [sys.executable, "-m", "fleetcore", "agent", "once", "--config", str(dev.config_path)],
            stderr=err,
            env={
                **os.environ,
                "JOURNAL_STREAM": "1:2",
                "FLEETCORE_JOURNAL_SOCKET": str(tmp_path / "journal.socket"),
            },
            timeout=120,
        )
    assert result.returncode == 0
    assert journal() == []
    assert "now running" in stderr.read_text(), stderr.read_text()


def test_a_service_down_is_critical(
    device: Callable[..., Any],
    fleet_repo: FleetRepo,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = tmp_path / "down"
    fleet_repo.commit(script_role("v1", health=f'test ! -e "{down}"'), "v1")
    dev = device("pi-d")
    agent = dev.agent()
    assert agent.once().outcome == "updated"
    down.touch()  # the release's service stops answering its health check
    logger = logging.getLogger("fleetcore")
    logger.addHandler(caplog.handler)  # the CLI's configure() may have stopped propagation
    try:
        state = agent.recheck(agent.journal.load())
    finally:
        logger.removeHandler(caplog.handler)
    assert state.status == "degraded"
    critical = [r for r in caplog.records if r.levelname == "CRITICAL"]
    assert {r.getMessage().split(":")[0] for r in critical} == {"service down"}
