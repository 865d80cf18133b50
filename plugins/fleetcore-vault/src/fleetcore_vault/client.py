"""A small Vault/OpenBao client: KV v2 reads, token or AppRole login, renewal.

Standard library HTTP only (:mod:`fleetcore.http`), made when a request is made.
Tokens are kept in memory only: an AppRole device logs in again when its
token expired, a token-file device re-reads its file.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fleetcore_vault import (
    VaultAuthError,
    VaultError,
    VaultForbidden,
    VaultNotFound,
    VaultUnavailable,
)

log = logging.getLogger("fleetcore.secrets.vault")


class VaultClient:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.address = settings.address.rstrip("/")
        self.token: str | None = None
        self.expires: float | None = None
        """Monotonic time the token expires; None for a token without TTL."""
        self.renewable = False
        self.logins = 0
        self.renewals = 0
        self._http: Any = None

    # -- HTTP ----------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, token: bool = True
    ) -> tuple[int, dict[str, Any]]:
        from fleetcore.http import Client, TransportError

        if self._http is None:
            # The address was checked to be http(s) in the settings. A redirect
            # is never followed (it would carry the token elsewhere): its status
            # comes back like any other refusal.
            ca = self.settings.ca_file
            self._http = Client(
                self.address,
                ca_file=ca if ca and self.address.startswith("https:") else None,
                timeout=self.settings.timeout.seconds,
                headers={"Accept": "application/json"},
                redirects="return",
            )
        headers = {"X-Vault-Token": self.token} if token and self.token else {}
        try:
            with self._http.request(
                method, f"/v1/{path}", json=body, headers=headers, raise_for_status=False
            ) as response:
                status, raw = response.status, response.read()
        except TransportError as exc:
            raise VaultUnavailable(
                f"vault at {self.address} is unreachable: {exc.reason}"
            ) from None
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {}
        return status, payload if isinstance(payload, dict) else {}

    @staticmethod
    def _why(payload: Mapping[str, Any]) -> str:
        # Vault's error strings name paths and reasons, never secret values.
        errors = payload.get("errors") or []
        return "; ".join(str(e) for e in errors if e)[:300]

    def _unavailable(self, status: int, payload: Mapping[str, Any], what: str) -> VaultError:
        why = self._why(payload)
        if "sealed" in why.lower():
            return VaultUnavailable(f"vault at {self.address} is sealed ({what})")
        if status >= 500 or status == 429:
            return VaultUnavailable(
                f"vault at {self.address} failed {what}: HTTP {status}{f' ({why})' if why else ''}"
            )
        return VaultError(
            f"vault at {self.address} refused {what}: HTTP {status}{f' ({why})' if why else ''}"
        )

    # -- tokens ------------------------------------------------------------------------

    def _approle(self) -> bool:
        return self.settings.role_id is not None

    def _acquire(self) -> None:
        self.token = None
        if self._approle():
            self._login()
        else:
            self._token_from_file()

    def _login(self) -> None:
        s = self.settings
        secret_id = _read_secret_file(s.secret_id_file, "secret_id_file")
        status, payload = self._request(
            "POST",
            f"auth/{s.approle_mount}/login",
            {"role_id": s.role_id, "secret_id": secret_id},
            token=False,
        )
        if status != 200:
            if status in (400, 403):
                raise VaultAuthError(
                    f"vault at {self.address} refused the AppRole login (role_id "
                    f"{s.role_id}, secret_id from {s.secret_id_file}): {self._why(payload)}"
                )
            raise self._unavailable(status, payload, "the AppRole login")
        auth = payload.get("auth") or {}
        self.token = auth.get("client_token")
        if not self.token:
            raise VaultAuthError(f"vault at {self.address} gave no token at AppRole login")
        self._set_ttl(auth.get("lease_duration", 0), auth.get("renewable", False))
        self.logins += 1
        log.info("logged in to vault at %s with AppRole %s", self.address, s.role_id)

    def _token_from_file(self) -> None:
        s = self.settings
        self.token = _read_secret_file(s.token_file, "token_file")
        status, payload = self._request("GET", "auth/token/lookup-self")
        if status == 403:
            self.token = None
            raise VaultAuthError(
                f"vault at {self.address} refused the token from {s.token_file} "
                "(expired, revoked or wrong)"
            )
        if status != 200:
            raise self._unavailable(status, payload, "the token lookup")
        data = payload.get("data") or {}
        self._set_ttl(data.get("ttl", 0), data.get("renewable", False))

    def _set_ttl(self, ttl: Any, renewable: Any) -> None:
        ttl = int(ttl or 0)
        self.expires = time.monotonic() + ttl if ttl > 0 else None
        self.renewable = bool(renewable) and ttl > 0

    def _renew(self) -> None:
        status, payload = self._request("POST", "auth/token/renew-self", {})
        if status != 200:
            log.info("vault token renewal refused (HTTP %d); logging in again", status)
            self._acquire()
            return
        auth = payload.get("auth") or {}
        self._set_ttl(auth.get("lease_duration", 0), auth.get("renewable", False))
        self.renewals += 1
        log.info("renewed the vault token at %s", self.address)

    def ensure_token(self) -> None:
        """A token that is valid for a while: log in, renew it when it is
        renewable and close to expiry, log in again when it expired."""
        now = time.monotonic()
        if self.token is None or (self.expires is not None and now >= self.expires):
            self._acquire()
        before = self.settings.renew_before.seconds
        if self.renewable and self.expires is not None and self.expires - time.monotonic() < before:
            self._renew()

    # -- KV v2 -------------------------------------------------------------------------

    def read(self, path: str) -> dict[str, str]:
        """The secret at ``mount/path`` (KV v2), its values as strings."""
        mount = self.settings.mount.strip("/")
        where = f"{mount}/{path}"
        self.ensure_token()
        status, payload = self._request("GET", f"{mount}/data/{path}")
        if status == 403 and self._approle():
            # An expired or revoked token looks like a policy refusal: log in once more.
            self._acquire()
            status, payload = self._request("GET", f"{mount}/data/{path}")
        if status == 200:
            data = (payload.get("data") or {}).get("data")
            if not isinstance(data, dict):
                raise VaultError(f"vault secret {where} is not a KV v2 secret with values")
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        if status == 403:
            raise VaultForbidden(
                f"vault refused to read {where}: this device's policy does not allow it (HTTP 403)"
            )
        if status == 404:
            raise VaultNotFound(f"vault has no secret at {where} (HTTP 404)")
        raise self._unavailable(status, payload, f"reading {where}")


def _read_secret_file(path: Path | None, key: str) -> str:
    if path is None:
        raise VaultAuthError(f"[secrets.vault] {key} is not set")
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        raise VaultAuthError(f"[secrets.vault] {key} {path} does not exist") from None
    except OSError as exc:
        raise VaultAuthError(
            f"[secrets.vault] {key} {path} cannot be read: {exc.strerror}"
        ) from None
    if not value:
        raise VaultAuthError(f"[secrets.vault] {key} {path} is empty")
    return value


_clients: dict[tuple[Any, ...], VaultClient] = {}


def client_for(settings: Any) -> VaultClient:
    """One client per login for the life of the process, so a long-running
    agent keeps (and renews) its token between updates."""
    key = (
        settings.address,
        settings.token_file,
        settings.role_id,
        settings.secret_id_file,
        settings.approle_mount,
    )
    client = _clients.get(key)
    if client is None or client.settings != settings:
        client = _clients[key] = VaultClient(settings)
    return client
