"""The shipped systemd units pass ``systemd-analyze verify`` and are
hardened; the Promtail config turns every journal field the agent writes
into the seed's Loki labels."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from fleetcore.agent import logs
from fleetcore.testing.services import missing

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = ("fleetcore-agent.service", "fleetcore-server.service")


def _directives(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze (Debian package systemd)")
        raise AssertionError("unreachable")
    # verify checks that ExecStart's program exists: point it at this install's.
    fleetcore = str(Path(sys.executable).with_name("fleetcore"))
    copies = []
    for name in UNITS:
        copy = tmp_path / name
        copy.write_text(
            (DEPLOY / "systemd" / name).read_text().replace("/usr/local/bin/fleetcore", fleetcore)
        )
        copies.append(str(copy))
    result = subprocess.run(
        [analyze, "verify", *copies], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_the_units_are_hardened_and_run_fleetcore() -> None:
    agent = _directives(DEPLOY / "systemd" / "fleetcore-agent.service")
    server = _directives(DEPLOY / "systemd" / "fleetcore-server.service")
    assert agent["ExecStart"] == [
        "/usr/local/bin/fleetcore agent run --config /etc/fleetcore/agent.toml"
    ]
    assert agent["ExecReload"] == ["/bin/kill -HUP $MAINPID"]  # the loop's reload signal
    assert server["ExecStart"][0].startswith("/usr/local/bin/fleetcore server run ")
    for unit in (agent, server):
        assert unit["NoNewPrivileges"] == ["yes"]
        assert unit["PrivateTmp"] == ["yes"]
        assert unit["ProtectSystem"][0] in ("full", "strict")
        assert unit["StateDirectory"]
        assert unit["Restart"] == ["always"]
    assert server["ProtectSystem"] == ["strict"]
    assert server["DynamicUser"] == ["yes"]
    assert server["CapabilityBoundingSet"] == [""]
    assert server["Environment"] == ["FLEETCORE_SERVER_DATA=/var/lib/fleetcore-server"]
    assert server["StateDirectory"] == ["fleetcore-server"]


def test_promtail_labels_every_journal_field_the_agent_writes() -> None:
    config = yaml.safe_load((DEPLOY / "promtail" / "promtail.yml").read_text())
    (job,) = config["scrape_configs"]
    assert "journal" in job
    mapped = {
        rule["source_labels"][0]: rule["target_label"]
        for rule in job["relabel_configs"]
        if "target_label" in rule
    }
    # The seed's Loki labels, from the fields the journal handler sends.
    seed = {
        "DEVICE_ID": "device_id",
        "ROLE": "role",
        "COMMIT": "commit_hash",
        "ENVIRONMENT": "environment",
    }
    assert {field for _, field in logs.JOURNAL_FIELDS} == set(seed)
    for field, label in seed.items():
        assert mapped[f"__journal_{field.lower()}"] == label
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep[0]["regex"].replace("\\", "") == "fleetcore-agent.service"
