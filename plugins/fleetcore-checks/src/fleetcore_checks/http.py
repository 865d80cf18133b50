"""The ``http`` health check: the role's services answer over HTTP.

Configured per role; without a URL it has nothing to look at and does not
run::

    [health.http]
    url = "http://127.0.0.1:8080/health"      # expects 200 within 5s

    # or several endpoints, each inheriting the table's status and timeout
    [health.http]
    timeout = "2s"
    endpoints = [
      { url = "http://127.0.0.1:8080/health" },
      { url = "http://127.0.0.1:9090/ready", status = 204 },
    ]

Each endpoint gets one GET request. Redirects are followed and the final
status is compared, unless the expected status is itself a redirect (3xx).
Proxy settings of the environment are not used: health checks look at the
device's own services. Only the standard library is used (through
:mod:`fleetcore.http`), which keeps the check cheap on small devices.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from attrs import field, frozen

from fleetcore.plugin import hookimpl
from fleetcore.plugin.options import Duration, between, checked
from fleetcore.plugin.types import Check, CheckContext, Finding
from fleetcore_checks._options import positive_duration


def _http_url(_inst: Any, attr: Any, value: str | None) -> None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError(f"{attr.name} must be an http:// or https:// URL, got {value!r}")


def _status(_inst: Any, attr: Any, value: int | None) -> None:
    if value is not None:
        between(100, 599)(_inst, attr, value)


@frozen(kw_only=True)
class Endpoint:
    """One URL to check, in ``endpoints = [...]``."""

    url: str = field(validator=checked(_http_url))
    status: int | None = field(default=None, validator=checked(_status))
    """The status the answer must have; default: the table's ``status``."""
    timeout: Duration | None = field(default=None, validator=checked(positive_duration))
    """How long to wait for the answer; default: the table's ``timeout``."""


@frozen(kw_only=True)
class HttpOptions:
    """``[health.http]`` in ``role.toml``: one ``url``, or several ``endpoints``."""

    url: str | None = field(default=None, validator=checked(_http_url))
    """The URL to GET."""
    status: int = field(default=200, validator=checked(between(100, 599)))
    """The status the answer must have."""
    timeout: Duration = field(default=Duration(5.0), validator=checked(positive_duration))
    """How long to wait for the connection and for each read of the answer."""
    endpoints: tuple[Endpoint, ...] = ()
    """More URLs to check, each with its own ``status`` and ``timeout`` if set."""

    def targets(self) -> list[Endpoint]:
        """Every URL to check, with the table's defaults filled in."""
        endpoints = list(self.endpoints)
        if self.url is not None:
            endpoints.insert(0, Endpoint(url=self.url))
        return [
            Endpoint(
                url=e.url,
                status=self.status if e.status is None else e.status,
                timeout=self.timeout if e.timeout is None else e.timeout,
            )
            for e in endpoints
        ]


def run(ctx: CheckContext) -> list[Finding]:
    targets = ctx.options.targets()
    if not targets:
        return [Finding(message="no url or endpoints configured in [health.http]")]
    return [finding for target in targets if (finding := check_endpoint(target)) is not None]


def check_endpoint(target: Endpoint) -> Finding | None:
    """GET ``target.url``; a finding when it does not answer with ``target.status``."""
    # fleetcore.http imports urllib only when a client is made: the agent
    # loads every plugin on each run.
    from fleetcore.http import Client, Timeout, TransportError

    assert target.status is not None and target.timeout is not None
    expects_redirect = 300 <= target.status < 400
    client = Client(
        timeout=target.timeout.seconds,
        redirects="return" if expects_redirect else "follow",
        proxies=False,
    )
    try:
        with client.request("GET", target.url, raise_for_status=False) as response:
            status = response.status
    except Timeout:
        return Finding(message=f"no answer within {target.timeout}", subject=target.url)
    except TransportError as exc:
        # Refused, reset, a garbled status line, a bad URL.
        if isinstance(exc.reason, ConnectionRefusedError):
            return Finding(message="connection refused", subject=target.url)
        return Finding(message=f"request failed: {exc.reason}", subject=target.url)
    if status != target.status:
        return Finding(
            message="wrong status",
            subject=target.url,
            expected=str(target.status),
            found=str(status),
        )
    return None


def applies(ctx: CheckContext) -> bool:
    return bool(ctx.options.targets())


@hookimpl
def fleetcore_register_health_checks() -> Iterator[Check]:
    yield Check(
        name="http",
        summary="HTTP endpoints answer with the expected status",
        run=run,
        config_type=HttpOptions,
        applies=applies,
    )
