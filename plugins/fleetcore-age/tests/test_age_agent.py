"""The age provider through the whole agent pipeline, on a real git repo,
with files encrypted by the reference ``age`` command."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fleetcore.agent.clock import Clock
from fleetcore.testing.gitrepo import FleetRepo
from fleetcore_age.testing import Device, age_encrypt, age_keygen, digest, role_files, ssh_keygen

TOKEN_V1 = "tok-v1-3b9f1c7e2a"
TOKEN_V2 = "tok-v2-77d0e4f1b8"
DB_V1 = "db-password-v1-91c2"
DB_V2 = "db-password-v2-5e6a"

# validate.sh sees the decrypted files and the env values, before activation.
VALIDATE = """\
test -f config/db.conf
test "$(stat -c %a config/db.conf)" = 600
grep -q '^password=' config/db.conf
test -n "$API_TOKEN"
"""


def secrets_for(recipients: list[str], token: str, db: str) -> dict[str, bytes]:
    return {
        ".env.age": age_encrypt(f"API_TOKEN={token}\n# a comment\n".encode(), recipients),
        "config/db.conf.age": age_encrypt(f"password={db}\n".encode(), recipients, armor=True),
    }


def plaintext_leaks(dev: Device, values: list[str]) -> list[str]:
    """Files of the state folder holding a secret, except the decrypted
    outputs and env files inside releases (where secrets belong)."""
    allowed = {".env", "db.conf", ".fleetcore.env"}
    leaks = []
    for path in dev.state.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        if "releases" in path.relative_to(dev.state).parts and path.name in allowed:
            continue
        data = path.read_bytes()
        leaks += [f"{path}: {v}" for v in values if v.encode() in data]
    return leaks


def test_encrypted_env_and_config_reach_validate_and_services(
    device, fleet_repo: FleetRepo, caplog: pytest.LogCaptureFixture
) -> None:
    dev = device()
    v1 = fleet_repo.commit(
        role_files("v1", secrets_for([dev.recipient], TOKEN_V1, DB_V1), validate=VALIDATE),
        "v1 with encrypted secrets",
    )
    caplog.set_level("DEBUG")
    once = dev.cli("--log-level", "DEBUG", "agent", "once", "--json")
    assert once.returncode == 0, once.stderr
    assert json.loads(once.stdout)["commit"] == v1
    assert dev.running() == f"v1 {v1} {digest(TOKEN_V1)}"
    release = dev.current
    assert (release / "config/db.conf").read_text() == f"password={DB_V1}\n"
    assert (release / ".env").read_text().startswith(f"API_TOKEN={TOKEN_V1}\n")
    for name in ("config/db.conf", ".env", ".fleetcore.env"):
        assert stat.S_IMODE((release / name).stat().st_mode) == 0o600, name
    assert (release / ".fleetcore.env").read_text() == f"API_TOKEN={TOKEN_V1}\n"
    # The encrypted files stay, as the manifest lists them.
    assert (release / "config/db.conf.age").is_file()
    assert (release / ".env.age").is_file()

    secrets = [TOKEN_V1, DB_V1]
    status = dev.cli("--log-level", "DEBUG", "agent", "status", "--json")
    history = dev.cli("--log-level", "DEBUG", "agent", "history", "--json")
    for proc in (once, status, history):
        for value in secrets:
            assert value not in proc.stdout + proc.stderr
    assert json.loads(status.stdout)
    assert "decrypted 2 secret file(s)" in once.stderr
    assert plaintext_leaks(dev, secrets) == []

    # Same again in-process, with the logs captured.
    fleet_repo.commit(
        role_files("v2", secrets_for([dev.recipient], TOKEN_V2, DB_V2), validate=VALIDATE)
    )
    result = dev.agent(Clock()).once()
    assert result.outcome == "updated", result.message
    assert dev.running() == f"v2 {result.commit} {digest(TOKEN_V2)}"
    for value in (TOKEN_V1, DB_V1, TOKEN_V2, DB_V2):
        assert value not in caplog.text
    assert plaintext_leaks(dev, [TOKEN_V1, DB_V1, TOKEN_V2, DB_V2]) == []


def test_rollback_restores_the_previous_release_with_its_own_secrets(
    device, fleet_repo: FleetRepo
) -> None:
    dev = device()
    v1 = fleet_repo.commit(role_files("v1", secrets_for([dev.recipient], TOKEN_V1, DB_V1)))
    assert dev.agent().once().outcome == "updated"
    fleet_repo.commit(
        role_files("v2", secrets_for([dev.recipient], TOKEN_V2, DB_V2), health="exit 1")
    )
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("rolled_back", v1)
    # v1 was started again with v1's token, from v1's own files.
    assert dev.running() == f"v1 {v1} {digest(TOKEN_V1)}"
    assert (dev.current / "config/db.conf").read_text() == f"password={DB_V1}\n"
    assert (dev.current / ".fleetcore.env").read_text() == f"API_TOKEN={TOKEN_V1}\n"
    # The failed release is gone, and its secrets with it.
    assert plaintext_leaks(dev, [TOKEN_V2, DB_V2]) == []
    assert not any(TOKEN_V2.encode() in p.read_bytes() for p in dev.state.rglob("*") if p.is_file())


def _bad_update(dev: Device, fleet_repo: FleetRepo, kind: str, tmp_path: Path) -> str:
    """Commit a v2 that this device cannot decrypt; returns the expected words."""
    other = tmp_path / "other.age"
    other_recipient = age_keygen(other)
    if kind == "other-device":
        files = secrets_for([other_recipient], TOKEN_V2, DB_V2)
        expect = "roles/web/.env.age: not encrypted to this device's key"
    elif kind == "corrupt":
        files = secrets_for([dev.recipient], TOKEN_V2, DB_V2)
        files["config/db.conf.age"] = files["config/db.conf.age"][:-40] + b"garbage\n"
        expect = "roles/web/config/db.conf.age: not a valid age file"
    elif kind == "wrong-identity":
        files = secrets_for([dev.recipient], TOKEN_V2, DB_V2)
        dev.identity.write_text(other.read_text())
        expect = "roles/web/.env.age: not encrypted to this device's key"
    elif kind == "missing-identity":
        files = secrets_for([dev.recipient], TOKEN_V2, DB_V2)
        dev.identity.rename(dev.root / "moved.age")
        expect = f"identity {dev.identity} does not exist"
    elif kind == "garbled-identity":
        files = secrets_for([dev.recipient], TOKEN_V2, DB_V2)
        dev.identity.write_text("AGE-SECRET-KEY-1NOTAKEY\n")
        expect = f"identity {dev.identity} line 1 is not a valid age secret key"
    elif kind == "plaintext-beside":
        files = secrets_for([dev.recipient], TOKEN_V2, DB_V2)
        files["config/db.conf"] = b"password=in-the-clear\n"
        expect = "roles/web/config/db.conf.age: the role also has config/db.conf"
    else:
        raise AssertionError(kind)
    fleet_repo.commit(role_files("v2", files), f"v2 {kind}")
    return expect


@pytest.mark.parametrize(
    "kind",
    [
        "other-device",
        "corrupt",
        "wrong-identity",
        "missing-identity",
        "garbled-identity",
        "plaintext-beside",
    ],
)
def test_undecryptable_update_is_refused_and_the_current_release_keeps_running(
    device, fleet_repo: FleetRepo, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    dev = device()
    v1 = fleet_repo.commit(role_files("v1", secrets_for([dev.recipient], TOKEN_V1, DB_V1)))
    assert dev.agent().once().outcome == "updated"
    expect = _bad_update(dev, fleet_repo, kind, tmp_path)
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("failed", v1)
    assert expect in result.message
    assert dev.running() == f"v1 {v1} {digest(TOKEN_V1)}"
    assert (dev.current / "config/db.conf").read_text() == f"password={DB_V1}\n"
    history = (dev.state / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["result"] == "failed"
    assert expect in json.loads(history[-1])["reason"]
    # Nothing of v2 was decrypted anywhere (v2's .env comes first, so even a
    # bad second file leaves no plaintext behind: the release is dropped).
    for value in (TOKEN_V2, DB_V2):
        assert value not in caplog.text
        assert not any(
            value.encode() in p.read_bytes() for p in dev.state.rglob("*") if p.is_file()
        )
    assert [p.name for p in (dev.state / "releases").iterdir() if p.is_dir()] == [
        dev.current.resolve().name
    ]


def test_ssh_ed25519_keys_work_as_device_identity_and_recipient(
    device, fleet_repo: FleetRepo
) -> None:
    dev = device()
    public = ssh_keygen(dev.root / "id_ed25519")
    text = dev.config_path.read_text().replace(str(dev.identity), str(dev.root / "id_ed25519"))
    dev.config_path.write_text(text)
    v1 = fleet_repo.commit(role_files("v1", secrets_for([public], TOKEN_V1, DB_V1)))
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("updated", v1), result.message
    assert dev.running() == f"v1 {v1} {digest(TOKEN_V1)}"


def test_env_files_of_the_role_choose_which_decrypted_files_become_env(
    device, fleet_repo: FleetRepo
) -> None:
    dev = device()
    files = {
        "app.env.age": age_encrypt(f"API_TOKEN={TOKEN_V1}\n".encode(), [dev.recipient]),
        "config/db.conf.age": age_encrypt(f"password={DB_V1}\n".encode(), [dev.recipient]),
    }
    toml = '[secrets.age]\nenv_files = ["app.env"]\n'
    v1 = fleet_repo.commit(role_files("v1", files, role_toml=toml))
    assert dev.agent().once().commit == v1
    assert dev.running() == f"v1 {v1} {digest(TOKEN_V1)}"
    # A role naming an env file it does not ship is refused, v1 keeps running.
    fleet_repo.commit(role_files("v2", files, role_toml='[secrets.age]\nenv_files = [".env"]\n'))
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("failed", v1)
    assert "roles/web/.env.age: named in [secrets.age] env_files" in result.message
    # An unknown key in the role's table is a config error naming the key.
    fleet_repo.commit(role_files("v3", files, role_toml='[secrets.age]\nenv_file = ["x"]\n'))
    result = dev.agent().once()
    assert (result.outcome, result.commit) == ("failed", v1)
    assert "unknown keys (env_file) @ secrets.age" in result.message


def test_a_role_without_age_files_does_not_need_an_identity(device, fleet_repo) -> None:
    dev = device()
    dev.identity.unlink()
    v1 = fleet_repo.commit(role_files("v1", {}))
    assert dev.agent().once().commit == v1
    assert not (dev.current / ".fleetcore.env").exists()
