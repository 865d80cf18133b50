"""The ``server`` provider against fleetcore's secrets-provider kit.

The provider's whole contract with the agent is ``ctx.server.secrets()``
(the device's authenticated call to the control server, tested against a
real server in tests/test_managed.py); here a stand-in answers it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetcore.plugin.types import DeviceInfo, SecretsProvider
from fleetcore.testing.conformance.secrets import Provision, SecretsProviderKit
from fleetcore.testing.contracts import check_entry_point
from fleetcore_server_secrets import plugin


class Server:
    """What the provider uses of the agent's ServerClient."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)

    def secrets(self) -> dict[str, str]:
        return dict(self.values)


class TestServerSecrets(SecretsProviderKit):
    @pytest.fixture
    def record(self) -> SecretsProvider:
        (record,) = plugin.fleetcore_register_secrets_providers()
        return record

    @pytest.fixture
    def role_options(self, secrets: Mapping[str, str]) -> Mapping[str, Any]:
        return {"keys": sorted(secrets)}

    @pytest.fixture
    def provision(self) -> Provision:
        def provision(release: Path, device: DeviceInfo, secrets: Mapping[str, str]) -> Server:
            return Server({**secrets, "OTHER_ROLE_SECRET": "not asked for"})

        return provision

    @pytest.fixture
    def provision_refused(self) -> Provision:
        """The server lacks one of the keys the role asks for."""

        def provision(release: Path, device: DeviceInfo, secrets: Mapping[str, str]) -> Server:
            return Server(dict(list(secrets.items())[:1]))

        return provision


def test_registered_through_its_entry_point() -> None:
    check_entry_point("server-secrets", {"secrets provider": ["server"]})
