"""The channels' options, from ``--alerts URL?key=value``: the URL without
its query is ``url``, each query parameter a key."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from attrs import field, frozen

from fleetcore.plugin.options import Duration, checked

WEBHOOK_SCHEMES = ("http", "https")
ALERTMANAGER_SCHEMES = {
    "alertmanager": "http",
    "alertmanager+http": "http",
    "alertmanager+https": "https",
}


def _url(schemes: tuple[str, ...], shape: str) -> Any:
    def check(_inst: Any, attr: Any, value: str) -> None:
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - parsing it raises on a bad port
        except ValueError:
            raise ValueError(f"{attr.name} has a bad port") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"{attr.name} must look like {shape}")
        if parts.fragment:
            raise ValueError(f"{attr.name} must not have a fragment")

    return check


def _readable(_inst: Any, attr: Any, value: Path | None) -> None:
    if value is not None and not value.is_file():
        raise ValueError(f"{attr.name} {str(value)!r} is not a file")


def _timeout(_inst: Any, attr: Any, value: Duration) -> None:
    if not 0 < value.seconds <= 300:
        raise ValueError(f"{attr.name} must be between 1s and 5m, got {value}")


def _positive(_inst: Any, attr: Any, value: Duration) -> None:
    if value.seconds <= 0:
        raise ValueError(f"{attr.name} must be positive, got {value}")


@frozen(kw_only=True)
class WebhookOptions:
    url: str = field(validator=checked(_url(WEBHOOK_SCHEMES, "http(s)://HOST[:PORT]/PATH")))
    timeout: Duration = field(default=Duration(10), validator=checked(_timeout))
    """Per request; a receiver slower than this counts as down (and is retried)."""
    ca_file: Path | None = field(default=None, validator=checked(_readable))
    token_file: Path | None = field(default=None, validator=checked(_readable))
    """A file holding a bearer token (``Authorization: Bearer ...``)."""


@frozen(kw_only=True)
class AlertmanagerOptions:
    url: str = field(
        validator=checked(
            _url(
                tuple(ALERTMANAGER_SCHEMES), "alertmanager://HOST:PORT or alertmanager+https://..."
            )
        )
    )
    timeout: Duration = field(default=Duration(10), validator=checked(_timeout))
    ca_file: Path | None = field(default=None, validator=checked(_readable))
    token_file: Path | None = field(default=None, validator=checked(_readable))
    ends_after: Duration = field(default=Duration(3600), validator=checked(_positive))
    """A firing alert's ``endsAt``: it stays active this long unless resolved earlier."""

    @property
    def base_url(self) -> str:
        """The HTTP(S) URL of Alertmanager (its path kept, for a route prefix)."""
        parts = urlsplit(self.url)
        return urlunsplit(
            (ALERTMANAGER_SCHEMES[parts.scheme], parts.netloc, parts.path.rstrip("/"), "", "")
        )


def bearer(token_file: Path | None) -> dict[str, str]:
    """The Authorization header for a token file (read at each send: rotated tokens work)."""
    if token_file is None:
        return {}
    return {"Authorization": f"Bearer {token_file.read_text().strip()}"}
