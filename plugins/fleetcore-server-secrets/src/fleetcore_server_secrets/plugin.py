"""The ``server`` secrets provider."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from attrs import frozen

from fleetcore.errors import FleetcoreError
from fleetcore.plugin import hookimpl
from fleetcore.plugin.types import SecretsProvider
from fleetcore.secrets.interface import SecretsContext


@frozen(kw_only=True)
class ServerSecretsRoleOptions:
    """``[secrets.server]`` of a role."""

    keys: tuple[str, ...] | None = None
    """Only these names; default: every secret of the role."""


class ServerSecrets:
    def __init__(self, _options: object) -> None:
        pass

    def provide(self, ctx: SecretsContext) -> Mapping[str, str]:
        if ctx.server is None:
            raise FleetcoreError(
                "the `server` secrets provider needs managed mode ([server] in agent.toml)"
            )
        values = ctx.server.secrets()
        options: ServerSecretsRoleOptions = ctx.role_options or ServerSecretsRoleOptions()
        if options.keys is None:
            return values
        missing = [k for k in options.keys if k not in values]
        if missing:
            raise FleetcoreError(
                f"the server has no secret {', '.join(missing)} for role {ctx.device.role}"
            )
        return {k: values[k] for k in options.keys}


@hookimpl
def fleetcore_register_secrets_providers() -> Iterator[SecretsProvider]:
    yield SecretsProvider(
        name="server",
        summary="Secrets kept by the control server, per role, fetched with the device's "
        "credential",
        factory=ServerSecrets,
        role_config_type=ServerSecretsRoleOptions,
    )
