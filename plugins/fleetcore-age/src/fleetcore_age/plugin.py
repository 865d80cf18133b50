"""The ``age`` secrets provider: decrypt the ``*.age`` files of a release.

A role keeps its secrets in the (possibly public) fleet repo encrypted with
age to the keys of the devices that run it (``fleetcore secrets encrypt``).
During the agent's secrets step, after the release was verified against its
manifest and before it is validated, every ``NAME.age`` of the release is
decrypted beside it as ``NAME`` (mode 0600), so ``validate.sh``, the
activator and the services see the plaintext. The ``.age`` files stay: they
are part of the verified release.

Device settings, ``agent.toml``::

    [secrets.age]
    identity = "/etc/fleetcore/identity.age"   # the default

Role settings, ``role.toml`` (optional)::

    [secrets.age]
    env_files = [".env"]   # decrypted files whose KEY=value lines become env values

With no ``env_files`` key, a decrypted ``.env`` at the top of the role is
used when there is one. The plaintext is written only into the release
folder: never into staging, logs, history or error messages.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import frozen

from fleetcore.plugin import hookimpl
from fleetcore.plugin.types import CliCommand, SecretsProvider
from fleetcore.secrets.interface import SecretsContext
from fleetcore_age import AgeError

if TYPE_CHECKING:
    import click

log = logging.getLogger("fleetcore.secrets.age")

DEFAULT_IDENTITY = Path("/etc/fleetcore/identity.age")
SUFFIX = ".age"


@frozen(kw_only=True)
class AgeSettings:
    """``[secrets.age]`` in ``agent.toml``: the device's own key."""

    identity: Path = DEFAULT_IDENTITY
    """The device's age identity (``fleetcore secrets keygen``) or an
    unencrypted OpenSSH ed25519 private key."""


@frozen(kw_only=True)
class AgeRoleOptions:
    """``[secrets.age]`` in ``role.toml``: what the role wants."""

    env_files: tuple[str, ...] | None = None
    """Decrypted files (paths in the role) whose ``KEY=value`` lines are also
    handed to the services as environment values. Default: ``.env`` if the
    role has a ``.env.age``."""


def encrypted_files(release_dir: Path) -> Iterator[Path]:
    """Every ``*.age`` file of a release, symbolic links included (they are
    refused later), without following linked folders."""
    for folder, dirs, files in os.walk(release_dir, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(SUFFIX):
                yield Path(folder) / name


def detect(release_dir: Path) -> bool:
    return next(encrypted_files(release_dir), None) is not None


class AgeProvider:
    def __init__(self, settings: AgeSettings) -> None:
        self.settings = settings

    def provide(self, ctx: SecretsContext) -> Mapping[str, str]:
        from fleetcore_age import keys

        release = ctx.release_dir
        root = release.resolve()
        shown = f"roles/{ctx.device.role}"
        sources = list(encrypted_files(release))
        if not sources:
            return {}
        identities = keys.load_identities(self.settings.identity)
        written: list[str] = []
        for source in sources:
            rel = source.relative_to(release).as_posix()
            name = f"{shown}/{rel}"
            target = source.with_name(source.name[: -len(SUFFIX)])
            if not target.name:
                raise AgeError(f"{name}: an encrypted file needs a name before .age")
            if source.is_symlink():
                raise AgeError(f"{name}: is a symbolic link; encrypted files must be regular files")
            if target.parent.resolve() != root / target.parent.relative_to(release):
                raise AgeError(f"{name}: its folder leads out of the release")
            if target.exists() or target.is_symlink():
                raise AgeError(
                    f"{name}: the role also has {target.relative_to(release).as_posix()}, "
                    "which decrypting would overwrite; keep only the encrypted file in the repo"
                )
            plaintext = keys.decrypt(source.read_bytes(), identities, name)
            keys.write_private(target, plaintext)
            written.append(target.relative_to(release).as_posix())
        log.info("decrypted %d secret file(s): %s", len(written), ", ".join(written))
        return self._env(release, written, ctx.role_options or AgeRoleOptions(), shown)

    @staticmethod
    def _env(
        release: Path, written: list[str], options: AgeRoleOptions, shown: str
    ) -> dict[str, str]:
        wanted = options.env_files
        if wanted is None:
            wanted = tuple(name for name in (".env",) if name in written)
        env: dict[str, str] = {}
        for name in wanted:
            rel = name.removeprefix("./")
            if rel not in written:
                raise AgeError(
                    f"{shown}/{rel}.age: named in [secrets.age] env_files but the release "
                    "has no such encrypted file"
                )
            env.update(parse_env(release / rel, f"{shown}/{rel}.age"))
        return env


def parse_env(path: Path, name: str) -> dict[str, str]:
    """``KEY=value`` lines (``#`` comments, ``export KEY=value``, quoted values)."""
    env = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        line = stripped.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key or not all(c.isalnum() or c == "_" for c in key):
            # The line itself may be a secret: name only where it is.
            raise AgeError(f"{name}: line {number} is not KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key] = value
    return env


@hookimpl
def fleetcore_register_secrets_providers() -> Iterator[SecretsProvider]:
    yield SecretsProvider(
        name="age",
        summary="Files encrypted with age to each device's key, kept in the fleet repo",
        factory=AgeProvider,
        config_type=AgeSettings,
        role_config_type=AgeRoleOptions,
        detect=detect,
    )


def _secrets_command() -> click.Command:
    from fleetcore_age.cli import secrets

    return secrets


@hookimpl
def fleetcore_register_commands() -> Iterator[CliCommand]:
    yield CliCommand(
        name="secrets",
        summary="Device keys and age-encrypted secrets in the fleet repo",
        factory=_secrets_command,
    )
