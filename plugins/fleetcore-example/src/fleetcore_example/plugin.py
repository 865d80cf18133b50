"""The ``tcp-port`` health check: a service accepts TCP connections.

Useful for services that speak something other than HTTP (MQTT, a database,
a serial-to-TCP bridge). It does not run unless a role selects it, because
there is no way to guess the port::

    # roles/broker/role.toml
    [health]
    checks = ["tcp-port"]

    [health.tcp-port]
    port = 1883
    # host = "127.0.0.1"
    # timeout = "3s"
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from attrs import field, frozen

from fleetcore.plugin import hookimpl
from fleetcore.plugin.options import Duration, between, checked
from fleetcore.plugin.types import Check, CheckContext, Finding


def _positive(_inst: Any, attr: Any, value: Duration) -> None:
    if value.seconds <= 0:
        raise ValueError(f"{attr.name} must be longer than 0s, got {value}")


@frozen(kw_only=True)
class TcpPortOptions:
    """``[health.tcp-port]`` in ``role.toml``."""

    port: int = field(validator=checked(between(1, 65535)))
    """The port that must accept a connection (required)."""
    host: str = "127.0.0.1"
    """Where the service listens, seen from the device."""
    timeout: Duration = field(default=Duration(3.0), validator=checked(_positive))
    """How long to wait for the connection."""


def run(ctx: CheckContext) -> list[Finding]:
    # Imported here, not at the top: the agent imports every plugin on each
    # run, and most runs never call this check.
    import socket

    options: TcpPortOptions = ctx.options
    subject = f"{options.host}:{options.port}"
    try:
        with socket.create_connection((options.host, options.port), options.timeout.seconds):
            pass
    except ConnectionRefusedError:
        return [Finding(message="connection refused", subject=subject)]
    except TimeoutError:
        return [Finding(message=f"no connection within {options.timeout}", subject=subject)]
    except OSError as exc:
        return [Finding(message=f"cannot connect: {exc.strerror or exc}", subject=subject)]
    return []


@hookimpl
def fleetcore_register_health_checks() -> Iterator[Check]:
    yield Check(
        name="tcp-port",
        summary="A TCP port accepts connections",
        run=run,
        config_type=TcpPortOptions,
        default=False,
    )
