"""The vault provider against fleetcore's secrets-provider kit, on a real
OpenBao server: an AppRole per device, its secrets at the role's path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetcore.plugin.types import DeviceInfo, SecretsProvider
from fleetcore.testing.conformance.secrets import Provision, SecretsProviderKit
from fleetcore_age.testing import age_keygen
from fleetcore_vault import plugin
from fleetcore_vault.testing import Bao


class TestVaultProvider(SecretsProviderKit):
    @pytest.fixture
    def record(self) -> SecretsProvider:
        (record,) = plugin.fleetcore_register_secrets_providers()
        return record

    @pytest.fixture
    def settings(self, bao: Bao, device: DeviceInfo, tmp_path: Path) -> Mapping[str, Any]:
        role_id, secret_id = bao.device(device.device_id, device.role)
        secret_file = tmp_path / "vault-secret-id"
        secret_file.write_text(secret_id)
        secret_file.chmod(0o600)
        identity = tmp_path / "identity.age"
        age_keygen(identity)
        return {
            "address": bao.address,
            "role_id": role_id,
            "secret_id_file": str(secret_file),
            "cache_identity": str(identity),
            "timeout": "3s",
        }

    @pytest.fixture
    def provision(self, bao: Bao) -> Provision:
        def provision(release: Path, device: DeviceInfo, secrets: Mapping[str, str]) -> None:
            bao.put(f"fleet/roles/{device.role}", dict(secrets))

        return provision

    @pytest.fixture
    def provision_refused(self, bao: Bao) -> Provision:
        """The secrets are there, but the device's policy no longer lets it read them."""

        def provision(release: Path, device: DeviceInfo, secrets: Mapping[str, str]) -> None:
            bao.put(f"fleet/roles/{device.role}", dict(secrets))
            policy = 'path "secret/data/fleet/nothing" { capabilities = ["read"] }\n'
            bao.ok("PUT", f"sys/policies/acl/{device.device_id}", {"policy": policy})

        return provision
