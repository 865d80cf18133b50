"""The vault provider against a real OpenBao server: logins, policies,
renewal, errors and the encrypted cache."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from fleetcore.config.convert import structure
from fleetcore.errors import ConfigError
from fleetcore.plugin.types import DeviceInfo
from fleetcore.secrets.interface import SecretsContext
from fleetcore.testing.services import free_port
from fleetcore_age.testing import age_keygen, ssh_keygen
from fleetcore_vault import (
    VaultAuthError,
    VaultForbidden,
    VaultNotFound,
    VaultUnavailable,
    cache,
)
from fleetcore_vault.cache import CacheError
from fleetcore_vault.client import client_for
from fleetcore_vault.plugin import VaultProvider, VaultRoleOptions, VaultSettings
from fleetcore_vault.testing import Bao

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def settings(server: Bao | str, tmp_path: Path, **options: Any) -> VaultSettings:
    identity = tmp_path / "identity.age"
    if not identity.exists():
        age_keygen(identity)
    address = server if isinstance(server, str) else server.address
    data = {"address": address, "cache_identity": str(identity), "timeout": "3s", **options}
    return structure(data, VaultSettings, source="agent.toml", root="secrets.vault")


def approle(server: Bao, tmp_path: Path, device_id: str, role: str = "web", **token: Any):
    role_id, secret_id = server.device(device_id, role, **token)
    secret_file = tmp_path / f"{device_id}.secret-id"
    secret_file.write_text(secret_id)
    return settings(server, tmp_path, role_id=role_id, secret_id_file=str(secret_file))


def provide(
    s: VaultSettings,
    tmp_path: Path,
    device_id: str = "pi-001",
    commit: str = COMMIT_A,
    paths: list[str] | None = None,
) -> dict[str, str]:
    role_options = structure(
        {"paths": paths} if paths is not None else {}, VaultRoleOptions, source="role.toml"
    )
    release = tmp_path / "release"
    release.mkdir(exist_ok=True)
    ctx = SecretsContext(
        device=DeviceInfo(device_id=device_id, role="web"),
        release_dir=release,
        commit=commit,
        state_dir=tmp_path / "state",
        role_options=role_options,
    )
    return dict(VaultProvider(s).provide(ctx))


def test_each_device_reads_its_role_and_own_path_and_not_another_device(
    bao: Bao, tmp_path: Path
) -> None:
    bao.put("fleet/roles/web", {"LEVEL": "role", "DB_HOST": "db.local", "PORT": 5432})
    bao.put("fleet/devices/pi-001", {"LEVEL": "device", "API_TOKEN": "tok-pi-001-secret"})
    bao.put("fleet/devices/pi-002", {"API_TOKEN": "tok-pi-002-secret"})
    device_a = approle(bao, tmp_path, "pi-001")
    approle(bao, tmp_path, "pi-002")
    assert provide(device_a, tmp_path) == {
        "LEVEL": "device",  # the later path overrides the earlier one
        "DB_HOST": "db.local",
        "PORT": "5432",
        "API_TOKEN": "tok-pi-001-secret",
    }
    with pytest.raises(VaultForbidden) as err:
        provide(device_a, tmp_path, paths=["fleet/devices/pi-002"])
    message = str(err.value)
    assert "vault refused to read secret/fleet/devices/pi-002" in message
    assert "policy does not allow it (HTTP 403)" in message
    assert "tok-pi" not in message


def test_token_file_login_and_a_refused_token(bao: Bao, tmp_path: Path) -> None:
    bao.put("fleet/roles/web", {"A": "from-token-login"})
    bao.ok(
        "PUT",
        "sys/policies/acl/web-reader",
        {"policy": 'path "secret/data/fleet/roles/web" { capabilities = ["read"] }'},
    )
    token_file = tmp_path / "token"
    token_file.write_text(bao.token(["web-reader"]) + "\n")
    s = settings(bao, tmp_path, token_file=str(token_file))
    web = ["fleet/roles/web"]
    assert provide(s, tmp_path, paths=web) == {"A": "from-token-login"}

    client_for(s).token = None
    token_file.write_text("s.not-a-real-token-value\n")
    with pytest.raises(VaultAuthError) as err:
        provide(s, tmp_path, paths=web)
    assert f"refused the token from {token_file}" in str(err.value)
    assert "not-a-real-token-value" not in str(err.value)


def test_a_wrong_secret_id_is_an_auth_error_naming_the_file(bao: Bao, tmp_path: Path) -> None:
    s = approle(bao, tmp_path, "pi-003")
    assert s.secret_id_file is not None
    s.secret_id_file.write_text("00000000-0000-0000-0000-000000000000")
    with pytest.raises(VaultAuthError) as err:
        provide(s, tmp_path, device_id="pi-003")
    assert f"refused the AppRole login (role_id {s.role_id}, secret_id from" in str(err.value)
    assert "00000000-0000" not in str(err.value)


def test_a_renewable_token_close_to_expiry_is_renewed(bao: Bao, tmp_path: Path) -> None:
    bao.put("fleet/roles/web", {"A": "1"})
    bao.ok(
        "PUT",
        "sys/policies/acl/web-reader",
        {"policy": 'path "secret/data/fleet/roles/web" { capabilities = ["read"] }'},
    )
    token = bao.token(["web-reader"], ttl="60s", renewable=True)
    token_file = tmp_path / "token"
    token_file.write_text(token)
    s = settings(bao, tmp_path, token_file=str(token_file), renew_before="5m")
    before = bao.ok("POST", "auth/token/lookup", {"token": token})["data"]
    assert not before.get("last_renewal_time")
    assert provide(s, tmp_path, paths=["fleet/roles/web"]) == {"A": "1"}
    after = bao.ok("POST", "auth/token/lookup", {"token": token})["data"]
    assert after.get("last_renewal_time"), "the server saw no renewal"
    # Far from expiry: no renewal.
    far = settings(bao, tmp_path, token_file=str(token_file), renew_before="1s")
    client_for(far).token = None
    provide(far, tmp_path, paths=["fleet/roles/web"])
    assert client_for(far).renewals == 0


def test_an_expired_approle_token_is_replaced_by_a_new_login(bao: Bao, tmp_path: Path) -> None:
    bao.put("fleet/roles/web", {"A": "1"})
    s = approle(bao, tmp_path, "pi-004", token_ttl="2s", token_max_ttl="2s")
    assert provide(s, tmp_path, device_id="pi-004", paths=["fleet/roles/web"]) == {"A": "1"}
    client = client_for(s)
    first = client.token
    assert client.logins == 1
    time.sleep(2.5)
    status, _ = bao.api("GET", "auth/token/lookup-self", token=first)
    assert status == 403  # the server expired it
    assert provide(s, tmp_path, device_id="pi-004", paths=["fleet/roles/web"]) == {"A": "1"}
    assert client.logins == 2 and client.token != first


def test_missing_paths_are_errors_unless_optional(bao: Bao, tmp_path: Path) -> None:
    bao.put("fleet/roles/web", {"A": "1"})
    s = approle(bao, tmp_path, "pi-005")
    # The default device path is optional: pi-005 has no device secret.
    assert provide(s, tmp_path, device_id="pi-005") == {"A": "1"}
    bao.ok(
        "PUT",
        "sys/policies/acl/pi-005",
        {"policy": 'path "secret/data/fleet/*" { capabilities = ["read"] }'},
    )
    with pytest.raises(VaultNotFound) as err:
        provide(s, tmp_path, device_id="pi-005", paths=["fleet/roles/web", "fleet/nope"])
    assert str(err.value) == "vault has no secret at secret/fleet/nope (HTTP 404)"
    assert provide(s, tmp_path, device_id="pi-005", paths=["fleet/roles/web", "?fleet/nope"]) == {
        "A": "1"
    }


def test_sealed_and_unreachable_vault_without_cache(own_bao: Bao, tmp_path: Path) -> None:
    own_bao.put("fleet/roles/web", {"A": "1"})
    s = approle(own_bao, tmp_path, "pi-001")
    own_bao.seal()
    with pytest.raises(VaultUnavailable) as err:
        provide(s, tmp_path)
    assert f"vault at {own_bao.address} is sealed" in str(err.value)
    assert f"no cached secrets for release {COMMIT_A[:12]}" in str(err.value)
    own_bao.unseal()
    assert provide(s, tmp_path) == {"A": "1"}

    nowhere = settings(f"http://127.0.0.1:{free_port()}", tmp_path, token_file=str(tmp_path / "t"))
    (tmp_path / "t").write_text("x")
    with pytest.raises(VaultUnavailable) as err:
        provide(nowhere, tmp_path, commit=COMMIT_B)
    assert f"vault at {nowhere.address} is unreachable" in str(err.value)
    assert f"no cached secrets for release {COMMIT_B[:12]}" in str(err.value)


def test_the_cache_is_encrypted_and_serves_only_its_own_commit(
    own_bao: Bao, tmp_path: Path
) -> None:
    own_bao.put("fleet/roles/web", {"API_TOKEN": "cached-token-value-77"})
    s = approle(own_bao, tmp_path, "pi-001")
    assert provide(s, tmp_path) == {"API_TOKEN": "cached-token-value-77"}
    cached = tmp_path / "state/secrets/vault" / f"{COMMIT_A}.cache"
    data = cached.read_bytes()
    assert b"cached-token-value-77" not in data
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    # Encrypted with the device's own key: another identity cannot open it.
    other = tmp_path / "other.age"
    age_keygen(other)
    with pytest.raises(CacheError, match="cannot be decrypted with cache_identity"):
        cache.load(tmp_path / "state", other, COMMIT_A)

    own_bao.stop()
    assert provide(s, tmp_path) == {"API_TOKEN": "cached-token-value-77"}
    with pytest.raises(VaultUnavailable) as err:
        provide(s, tmp_path, commit=COMMIT_B)
    assert f"no cached secrets for release {COMMIT_B[:12]}" in str(err.value)
    # A cache file copied to another commit's name is refused.
    (cached.parent / f"{COMMIT_B}.cache").write_bytes(data)
    with pytest.raises(CacheError, match="cached for another release"):
        provide(s, tmp_path, commit=COMMIT_B)
    # Without the cache, an outage is an error.
    no_cache = settings(
        own_bao, tmp_path, role_id=s.role_id, secret_id_file=str(s.secret_id_file), cache=False
    )
    with pytest.raises(VaultUnavailable, match="unreachable"):
        provide(no_cache, tmp_path)


def test_the_cache_round_trips_with_an_ssh_key_and_refuses_tampering(tmp_path: Path) -> None:
    identity = tmp_path / "id_ed25519"
    ssh_keygen(identity)
    state = tmp_path / "state"
    path = cache.store(state, identity, COMMIT_A, {"A": "1"})
    assert cache.load(state, identity, COMMIT_A) == ({"A": "1"}, ANY)
    # A comment added to the identity file does not change the key.
    age = tmp_path / "identity.age"
    age_keygen(age)
    cache.store(state, age, COMMIT_B, {"B": "2"})
    age.write_text("# re-saved\n" + age.read_text())
    loaded = cache.load(state, age, COMMIT_B)
    assert loaded is not None and loaded[0] == {"B": "2"}
    # One flipped bit of the ciphertext is refused, not served.
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="written with another key, or altered"):
        cache.load(state, identity, COMMIT_A)
    path.write_bytes(b"garbage")
    with pytest.raises(CacheError, match="not a secrets cache"):
        cache.load(state, identity, COMMIT_A)
    with pytest.raises(CacheError, match="holds no private key"):
        cache.store(state, tmp_path / "id_ed25519.pub", COMMIT_A, {})
    with pytest.raises(CacheError, match="does not exist"):
        cache.load(state, tmp_path / "nope", COMMIT_B)


def test_a_cache_of_the_age_format_counts_as_absent(tmp_path: Path) -> None:
    identity = tmp_path / "identity.age"
    age_keygen(identity)
    state = tmp_path / "state"
    old = cache.folder(state) / f"{COMMIT_A}.age"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"age-encryption.org/v1\n...")
    assert cache.load(state, identity, COMMIT_A) is None
    cache.store(state, identity, COMMIT_A, {"A": "1"})
    assert not old.exists()
    assert cache.load(state, identity, COMMIT_A) is not None


def test_a_refusal_never_falls_back_to_the_cache(bao: Bao, tmp_path: Path) -> None:
    bao.put("fleet/roles/web", {"A": "1"})
    s = approle(bao, tmp_path, "pi-006")
    assert provide(s, tmp_path, device_id="pi-006") == {"A": "1"}
    # The operator takes the device's access away: the cached copy is not used.
    bao.ok("PUT", "sys/policies/acl/pi-006", {"policy": 'path "x/*" { capabilities = ["read"] }'})
    with pytest.raises(VaultForbidden):
        provide(s, tmp_path, device_id="pi-006")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"address": "http://v"}, "give either token_file or role_id with secret_id_file"),
        (
            {"address": "http://v", "token_file": "/t", "role_id": "r", "secret_id_file": "/s"},
            "give either token_file or role_id with secret_id_file",
        ),
        ({"address": "http://v", "role_id": "r"}, "AppRole needs both role_id and secret_id_file"),
        ({"address": "v:8200", "token_file": "/t"}, "address must start with http:// or https://"),
        ({"address": "http://v", "token_file": "/t", "tokenfile": "/t"}, "unknown keys"),
    ],
)
def test_device_settings_are_checked(table: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        structure(table, VaultSettings, source="agent.toml", root="secrets.vault")
    assert message in str(err.value)
    assert "secrets.vault" in str(err.value)


def test_role_paths_are_checked() -> None:
    with pytest.raises(ConfigError) as err:
        structure({"paths": ["fleet/{host}"]}, VaultRoleOptions, source="role.toml")
    assert "uses {host}; known: {role}, {device_id}, {segment}" in str(err.value)
    with pytest.raises(ConfigError, match="is not a secret path"):
        structure({"paths": ["../sys"]}, VaultRoleOptions, source="role.toml")
