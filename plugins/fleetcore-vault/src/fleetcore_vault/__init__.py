"""Vault (and OpenBao) secrets for fleetcore.

- :mod:`fleetcore_vault.plugin`: the ``vault`` secrets provider (entry point ``vault``).
- :mod:`fleetcore_vault.client`: a small KV v2 client (standard library HTTP)
  with token and AppRole login and token renewal.
- :mod:`fleetcore_vault.cache`: the last good secrets, encrypted with a key
  derived from the device's own identity, for a device cut off from Vault.
"""

from fleetcore.errors import FleetcoreError


class VaultError(FleetcoreError):
    """Vault refused or failed a request. The message names the address or
    path and the reason, never a secret value or a token."""


class VaultUnavailable(VaultError):
    """Vault could not answer (unreachable, sealed, timed out, 5xx): the
    device may fall back to its cached secrets for the same release."""


class VaultForbidden(VaultError):
    """The device's token or policy does not allow the request (HTTP 403)."""


class VaultNotFound(VaultError):
    """No secret at a required path (HTTP 404)."""


class VaultAuthError(VaultError):
    """Login failed: a bad token file, role_id or secret_id."""


__all__ = ["VaultAuthError", "VaultError", "VaultForbidden", "VaultNotFound", "VaultUnavailable"]
