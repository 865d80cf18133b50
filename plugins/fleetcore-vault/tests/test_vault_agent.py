"""The vault provider through the whole agent pipeline, against real OpenBao."""

from __future__ import annotations

import json

import pytest

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore_age.testing import Device, digest, role_files
from fleetcore_vault.testing import Bao

USES_VAULT = '[secrets]\nproviders = ["vault"]\n'
TOKEN_1 = "vault-token-one-5c1e"
TOKEN_2 = "vault-token-two-9a4b"
DB_PASSWORD = "vault-db-pass-31f7"

# Fails unless the values reached validate.sh before activation.
VALIDATE = 'test -n "$API_TOKEN"\ntest -n "$DB_PASSWORD"\n'


def leaks(dev: Device, values: list[str]) -> list[str]:
    found = []
    for path in dev.state.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.name == ".fleetcore.env":
            continue
        data = path.read_bytes()
        found += [f"{path}: {v}" for v in values if v.encode() in data]
    return found


def test_vault_values_reach_the_services_and_nothing_else(
    bao: Bao, vault_device, fleet_repo: FleetRepo, caplog: pytest.LogCaptureFixture
) -> None:
    bao.put("fleet/roles/web", {"API_TOKEN": TOKEN_1, "DB_PASSWORD": "role-level"})
    bao.put("fleet/devices/pi-101", {"DB_PASSWORD": DB_PASSWORD})
    dev = vault_device(bao, "pi-101")
    v1 = fleet_repo.commit(role_files("v1", {}, validate=VALIDATE, role_toml=USES_VAULT))
    once = dev.cli("--log-level", "DEBUG", "agent", "once", "--json")
    assert once.returncode == 0, once.stderr
    assert dev.running() == f"v1 {v1} {digest(TOKEN_1)}"
    env = (dev.current / ".fleetcore.env").read_text().splitlines()
    assert sorted(env) == sorted([f"API_TOKEN={TOKEN_1}", f"DB_PASSWORD={DB_PASSWORD}"])
    assert "read 2 value(s) from vault at fleet/roles/web" in once.stderr
    status = dev.cli("agent", "status", "--json")
    history = dev.cli("agent", "history", "--json")
    assert json.loads(status.stdout) and json.loads(history.stdout)
    for proc in (once, status, history):
        for value in (TOKEN_1, DB_PASSWORD):
            assert value not in proc.stdout + proc.stderr
    # The state folder holds the values only in the release's env file; the
    # cache is encrypted.
    assert (dev.state / "secrets/vault" / f"{v1}.cache").is_file()
    assert leaks(dev, [TOKEN_1, DB_PASSWORD]) == []
    assert TOKEN_1 not in caplog.text


def test_a_device_asking_for_another_devices_path_is_refused(
    bao: Bao, vault_device, fleet_repo: FleetRepo
) -> None:
    bao.put("fleet/roles/web", {"API_TOKEN": TOKEN_1, "DB_PASSWORD": "x"})
    bao.put("fleet/devices/pi-202", {"API_TOKEN": "belongs-to-pi-202"})
    vault_device(bao, "pi-202")
    dev = vault_device(bao, "pi-201")
    v1 = fleet_repo.commit(role_files("v1", {}, role_toml=USES_VAULT))
    assert dev.agent().once().commit == v1
    greedy = (
        USES_VAULT + '[secrets.vault]\npaths = ["fleet/roles/{role}", "fleet/devices/pi-202"]\n'
    )
    fleet_repo.commit(role_files("v2", {}, role_toml=greedy))
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("failed", v1)
    assert "vault refused to read secret/fleet/devices/pi-202" in result.message
    assert dev.running() == f"v1 {v1} {digest(TOKEN_1)}"
    assert leaks(dev, ["belongs-to-pi-202"]) == []


def test_rollback_starts_the_previous_release_with_its_own_vault_values(
    own_bao: Bao, vault_device, fleet_repo: FleetRepo
) -> None:
    own_bao.put("fleet/roles/web", {"API_TOKEN": TOKEN_1})
    dev = vault_device(own_bao, "pi-301")
    v1 = fleet_repo.commit(role_files("v1", {}, role_toml=USES_VAULT))
    assert dev.agent().once().commit == v1
    own_bao.put("fleet/roles/web", {"API_TOKEN": TOKEN_2})
    fleet_repo.commit(role_files("v2", {}, role_toml=USES_VAULT, health="exit 1"))
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("rolled_back", v1)
    # v1 came back with the values it was deployed with, Vault not needed.
    assert dev.running() == f"v1 {v1} {digest(TOKEN_1)}"
    assert (dev.current / ".fleetcore.env").read_text() == f"API_TOKEN={TOKEN_1}\n"


# On its first run validate.sh kills the agent (a power cut mid-update).
CRASH_ONCE = """\
if [ ! -e "$FLEETCORE_STATE_DIR/../crashed" ]; then
  touch "$FLEETCORE_STATE_DIR/../crashed"
  kill -9 $PPID
  sleep 5
fi
"""


def test_a_device_cut_off_from_vault_sets_up_its_release_again_from_the_cache(
    own_bao: Bao, vault_device, fleet_repo: FleetRepo
) -> None:
    own_bao.put("fleet/roles/web", {"API_TOKEN": TOKEN_1})
    dev = vault_device(own_bao, "pi-401")
    v1 = fleet_repo.commit(role_files("v1", {}, validate=CRASH_ONCE, role_toml=USES_VAULT))
    crashed = dev.cli("agent", "once")
    assert crashed.returncode == -9, crashed.stderr
    assert dev.running() is None
    # The device comes back without Vault: the half-made release is dropped,
    # and the same commit is set up again from the encrypted cache.
    own_bao.stop()
    again = dev.cli("agent", "once", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["commit"] == v1
    assert "is unreachable" in again.stderr
    assert f"using the secrets cached for {v1[:12]}" in again.stderr
    assert dev.running() == f"v1 {v1} {digest(TOKEN_1)}"
    assert TOKEN_1 not in again.stderr + again.stdout

    # A new commit cannot use v1's cache: refused, v1 keeps running.
    fleet_repo.commit(role_files("v2", {}, role_toml=USES_VAULT))
    refused = dev.cli("agent", "once", "--json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["commit"] == v1
    assert "no cached secrets for release" in refused.stdout
    assert dev.running() == f"v1 {v1} {digest(TOKEN_1)}"
