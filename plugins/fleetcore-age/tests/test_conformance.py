"""The age provider against fleetcore's secrets-provider kit, with keys and
files made by the reference age tools."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetcore.plugin.types import DeviceInfo, SecretsProvider
from fleetcore.testing.conformance.secrets import Provision, SecretsProviderKit
from fleetcore_age import plugin
from fleetcore_age.testing import age_encrypt, age_keygen


def env_file(secrets: Mapping[str, str]) -> bytes:
    return "".join(f"{key}={value}\n" for key, value in secrets.items()).encode()


class TestAgeProvider(SecretsProviderKit):
    @pytest.fixture
    def record(self) -> SecretsProvider:
        (record,) = plugin.fleetcore_register_secrets_providers()
        return record

    @pytest.fixture
    def identity(self, tmp_path: Path) -> tuple[Path, str]:
        path = tmp_path / "identity.age"
        return path, age_keygen(path)

    @pytest.fixture
    def settings(self, identity: tuple[Path, str]) -> Mapping[str, Any]:
        return {"identity": str(identity[0])}

    @pytest.fixture
    def provision(self, identity: tuple[Path, str]) -> Provision:
        def provision(release: Path, device: DeviceInfo, secrets: Mapping[str, str]) -> None:
            (release / ".env.age").write_bytes(age_encrypt(env_file(secrets), [identity[1]]))

        return provision

    @pytest.fixture
    def provision_refused(self, tmp_path: Path) -> Provision:
        """Encrypted to another device's key."""
        other = age_keygen(tmp_path / "other.age")

        def provision(release: Path, device: DeviceInfo, secrets: Mapping[str, str]) -> None:
            (release / ".env.age").write_bytes(age_encrypt(env_file(secrets), [other]))

        return provision
