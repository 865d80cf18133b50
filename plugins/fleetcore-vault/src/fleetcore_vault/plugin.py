"""The ``vault`` secrets provider: KV v2 secrets from Vault or OpenBao.

Device settings, ``agent.toml`` (a role never chooses where a device sends
its credentials)::

    [secrets.vault]
    address = "https://vault.tailnet:8200"
    role_id = "6f1c..."                         # AppRole: role_id + secret_id_file
    secret_id_file = "/etc/fleetcore/vault-secret-id"
    # token_file = "/etc/fleetcore/vault-token" # or a token
    mount = "secret"                            # the KV v2 mount
    timeout = "10s"
    ca_file = "/etc/fleetcore/vault-ca.pem"     # optional
    cache_identity = "/etc/fleetcore/identity.age"

Role settings, ``role.toml``::

    [secrets.vault]
    paths = ["fleet/roles/{role}", "?fleet/devices/{device_id}"]   # the default

Paths are read in order and later ones override earlier keys; ``{role}``,
``{device_id}`` and ``{segment}`` are filled in. A missing secret (404) is an
error, unless the path starts with ``?``. The values are returned as
environment values: the agent writes them to the release's ``.fleetcore.env``
and the activator hands them to the services.

The values fetched for a release are cached under the state folder,
encrypted with a key derived from the device's own identity file. When
Vault is unreachable or sealed, the cache of the *same commit* is used, so
a device cut off from Vault can still set up again the release it already
had secrets for; never for another commit, and never after a 403 or 404
(an answer, not an outage).
"""

from __future__ import annotations

import logging
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from attrs import field, frozen

from fleetcore.plugin import hookimpl
from fleetcore.plugin.options import Duration, checked
from fleetcore.plugin.types import SecretsProvider
from fleetcore.secrets.interface import SecretsContext
from fleetcore_vault import VaultError, VaultNotFound, VaultUnavailable

log = logging.getLogger("fleetcore.secrets.vault")

DEFAULT_PATHS = ("fleet/roles/{role}", "?fleet/devices/{device_id}")
DEFAULT_IDENTITY = Path("/etc/fleetcore/identity.age")
PLACEHOLDERS = ("role", "device_id", "segment")


def _address(_inst: Any, _attr: Any, value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"address must start with http:// or https://, got {value!r}")


def _login(inst: Any, _attr: Any, _value: Any) -> None:
    approle = inst.role_id is not None or inst.secret_id_file is not None
    if approle and (inst.role_id is None or inst.secret_id_file is None):
        raise ValueError("AppRole needs both role_id and secret_id_file")
    if approle == (inst.token_file is not None):
        raise ValueError("give either token_file or role_id with secret_id_file")


@frozen(kw_only=True)
class VaultSettings:
    """``[secrets.vault]`` in ``agent.toml``."""

    address: str = field(validator=checked(_address))
    token_file: Path | None = field(default=None, validator=checked(_login))
    role_id: str | None = None
    secret_id_file: Path | None = None
    approle_mount: str = "approle"
    mount: str = "secret"
    timeout: Duration = Duration(10.0)
    ca_file: Path | None = None
    renew_before: Duration = Duration(300.0)
    """Renew a renewable token when it has less than this left."""
    cache: bool = True
    """Keep the last secrets of each release, encrypted, for when Vault is out of reach."""
    cache_identity: Path = DEFAULT_IDENTITY
    """The private key the cache's key is derived from: an age identity (by
    default the device's ``[secrets.age]`` identity file) or an OpenSSH
    private key. Only its reader can read the cache."""


def _paths(_inst: Any, _attr: Any, value: tuple[str, ...]) -> None:
    for path in value:
        bare = path.removeprefix("?")
        if not bare or bare.startswith("/") or ".." in bare.split("/"):
            raise ValueError(f"paths: {path!r} is not a secret path like 'fleet/roles/{{role}}'")
        for _, name, _, _ in string.Formatter().parse(bare):
            if name is not None and name not in PLACEHOLDERS:
                raise ValueError(
                    f"paths: {path!r} uses {{{name}}}; known: "
                    + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                )


@frozen(kw_only=True)
class VaultRoleOptions:
    """``[secrets.vault]`` in ``role.toml``."""

    paths: tuple[str, ...] = field(default=DEFAULT_PATHS, validator=checked(_paths))


class VaultProvider:
    def __init__(self, settings: VaultSettings) -> None:
        self.settings = settings

    def provide(self, ctx: SecretsContext) -> Mapping[str, str]:
        from fleetcore_vault import cache
        from fleetcore_vault.client import client_for

        options = ctx.role_options or VaultRoleOptions()
        device = ctx.device
        fill = {"role": device.role, "device_id": device.device_id, "segment": device.segment}
        try:
            values = self._fetch(client_for(self.settings), options.paths, fill)
        except VaultUnavailable as exc:
            if not self.settings.cache:
                raise
            cached = cache.load(ctx.state_dir, self.settings.cache_identity, ctx.commit)
            if cached is None:
                raise VaultUnavailable(
                    f"{exc}; no cached secrets for release {ctx.commit[:12]}"
                ) from None
            values, fetched = cached
            log.warning("%s; using the secrets cached for %s at %s", exc, ctx.commit[:12], fetched)
            return values
        if self.settings.cache:
            identity = self.settings.cache_identity
            if identity.exists():
                cache.store(ctx.state_dir, identity, ctx.commit, values)
            else:
                log.warning(
                    "vault secrets not cached: cache_identity %s does not exist "
                    "(`fleetcore secrets keygen` makes one)",
                    identity,
                )
        return values

    @staticmethod
    def _fetch(client: Any, paths: tuple[str, ...], fill: dict[str, str]) -> dict[str, str]:
        values: dict[str, str] = {}
        for entry in paths:
            optional = entry.startswith("?")
            path = entry.removeprefix("?").format(**fill)
            try:
                found = client.read(path)
            except VaultNotFound:
                if not optional:
                    raise
                log.info("no vault secret at %s (optional)", path)
                continue
            for key in found:
                if not key or not all(c.isalnum() or c == "_" for c in key):
                    raise VaultError(
                        f"vault secret {path}: key {key!r} is not an environment variable name"
                    )
            values.update(found)
            log.info("read %d value(s) from vault at %s", len(found), path)
        return values


@hookimpl
def fleetcore_register_secrets_providers() -> Iterator[SecretsProvider]:
    yield SecretsProvider(
        name="vault",
        summary="KV v2 secrets from Vault or OpenBao, cached encrypted for offline restarts",
        factory=VaultProvider,
        config_type=VaultSettings,
        role_config_type=VaultRoleOptions,
    )
