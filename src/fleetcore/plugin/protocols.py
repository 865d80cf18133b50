"""What plugins implement, and the contexts and narrow services they receive.

One module for every kind, below the records of :mod:`fleetcore.plugin.types`
so that a record can name the type its factory returns without an import
cycle. Each kind's tutorial lives in its interface module, which re-exports
the names here: :mod:`fleetcore.fetch.interface`,
:mod:`fleetcore.activate.interface`, :mod:`fleetcore.secrets.interface`,
:mod:`fleetcore.rollout.interface`, :mod:`fleetcore.channels.interface`,
:mod:`fleetcore.alerts.interface`.

Where the core hands a plugin one of its own objects (the agent's repair
tools, the device's server client), the plugin sees it through a narrow
protocol listing exactly what it may call: :class:`RepairKit`,
:class:`ControlServerSecrets`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from attrs import field, frozen

from fleetcore.model import Alert, DeviceInfo, Event

if TYPE_CHECKING:
    from fleetcore.release import Manifest

# -- fetchers -------------------------------------------------------------------


@frozen(kw_only=True)
class Fetched:
    """A role archive on disk, ready to be unpacked."""

    archive: Path
    """A tar file (plain, gzip, bzip2 or xz) in the work folder the agent gave."""
    prefix: str
    """The folder of the role inside the archive (``roles/web/``), stripped on unpack."""
    manifest: Manifest
    """What the unpacked role must contain, from a source other than the archive."""


class Source(Protocol):
    """The object a :class:`~fleetcore.plugin.types.Fetcher` factory returns.

    Optionally it also has ``relation(old, new) -> str``: ``"same"``,
    ``"descendant"`` (``new``'s history holds ``old``), ``"ancestor"`` or
    ``"unrelated"``. The agent asks it before each update, and refuses to go
    back in history unless an operator's pin, lock or stable commit says so
    (rollback protection); a source without it cannot protect the device."""

    def head(self, branch: str) -> str:
        """The full commit id at the head of ``branch``."""

    def read(self, commit: str, paths: Sequence[str]) -> Mapping[str, bytes]:
        """The contents of the files at ``paths`` in ``commit``; a missing file
        is left out of the result (it is not an error)."""

    def fetch(self, commit: str, role: str, workdir: Path) -> Fetched:
        """Write the archive of ``roles/<role>`` at ``commit`` into ``workdir``
        and return it with its manifest. ``workdir`` is empty and belongs to
        this call; the agent removes it afterwards."""


# -- activators -----------------------------------------------------------------


@frozen(kw_only=True)
class ActivationContext:
    device: DeviceInfo
    release_dir: Path
    """The release to start (or stop), unpacked, verified, with its secrets."""
    commit: str
    env: Mapping[str, str] = field(factory=dict)
    """``FLEETCORE_RELEASE_DIR``, ``FLEETCORE_COMMIT``, ``FLEETCORE_ROLE``,
    ``FLEETCORE_DEVICE_ID`` and the secrets providers' values."""
    project: str = ""
    """A stable name for this device's services across releases
    (``fleetcore-<role>``), e.g. the compose project name."""
    previous_dir: Path | None = None
    """When starting: the release being replaced, if any."""


ENV_FILE = ".fleetcore.env"
"""The file in a release folder holding the environment values secrets
providers gave (``KEY=value`` lines, mode 0600); activators pass it on."""


def project_name(device: DeviceInfo) -> str:
    """The name a device's services keep across releases: ``fleetcore-<role>``."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in device.role.lower())
    return f"fleetcore-{safe}"


class ActivatorImpl(Protocol):
    """The object an :class:`~fleetcore.plugin.types.Activator` factory returns."""

    def start(self, ctx: ActivationContext) -> None:
        """Bring the services of ``ctx.release_dir`` up, replacing whatever
        ran before. Return when they were started (not necessarily healthy:
        health checks come after the settle time)."""

    def stop(self, ctx: ActivationContext) -> None:
        """Stop the services of ``ctx.release_dir``. Called on the outgoing
        release when the activator changes between releases, and when a first
        install fails and there is nothing to go back to."""


# -- secrets providers ------------------------------------------------------------


class ControlServerSecrets(Protocol):
    """What a secrets provider may ask the control server (managed mode):
    this device's secrets for its role, fetched with the device's own
    credential. Nothing else of the device's server client is reachable."""

    def secrets(self) -> Mapping[str, str]:
        """The device's secrets, by name; raises
        :class:`~fleetcore.errors.FetchError` when the server cannot be asked."""


class CommandApp(Protocol):
    """What a plugin's command (``fleetcore_register_commands``) gets with
    ``@click.pass_obj``: the application object every command shares."""

    debug: bool

    def plugins(self, disabled: tuple[str, ...] = ()) -> Any:
        """The plugin manager (built on first use)."""

    def setup_logging(self, configured: str = "text") -> None:
        """Logging as the global options say (``--log-level``, ``--log-format``)."""

    def print_json(self, data: Any) -> None:
        """``data`` as indented JSON on standard output."""

    def abort(self, message: str, code: int = 1) -> NoReturn:
        """Print ``error: message`` on standard error and exit with ``code``."""


class _SecretsOnly:
    """The device's server client cut down to :class:`ControlServerSecrets`."""

    __slots__ = ("_secrets",)

    def __init__(self, server: ControlServerSecrets) -> None:
        self._secrets = server.secrets

    def secrets(self) -> Mapping[str, str]:
        return self._secrets()

    def __repr__(self) -> str:
        return "<control server: secrets>"


def _secrets_only(server: ControlServerSecrets | None) -> ControlServerSecrets | None:
    if server is None or isinstance(server, _SecretsOnly):
        return server
    return _SecretsOnly(server)


@frozen(kw_only=True)
class SecretsContext:
    device: DeviceInfo
    release_dir: Path
    commit: str
    state_dir: Path
    """The agent's state folder, for caches the provider keeps (encrypted)."""
    role_options: Any = None
    """The role's ``[secrets.NAME]`` table, structured into the record's
    ``role_config_type``."""
    server: ControlServerSecrets | None = field(default=None, converter=_secrets_only)
    """In managed mode, the control server as far as a secrets provider may
    use it (:class:`ControlServerSecrets`); None in git-only mode. Whatever
    the agent passes is narrowed to that protocol here."""


class SecretsProviderImpl(Protocol):
    def provide(self, ctx: SecretsContext) -> Mapping[str, str]:
        """Put this provider's secrets into ``ctx.release_dir`` and return
        environment values for the services (may be empty)."""


# -- rollout strategies -------------------------------------------------------------


class Strategy(Protocol):
    def eligible(self, device: DeviceInfo, commit: str) -> bool:
        """True when ``device`` may run ``commit`` under this rollout."""


# -- event channels ---------------------------------------------------------------

EVENT_NAMES = ("update-available", "policy-changed", "check-now", "send-logs")
"""The events a subscriber passes on to ``wake``; it ignores any other name.
``check-now`` asks for a deep drift check rather than an update,
``send-logs`` for the agent's recent log lines."""


class EventPublisher(Protocol):
    """The server's half of a channel (``EventChannel.publisher(options)``)."""

    def publish(self, events: Sequence[Event]) -> None:
        """Send each event (``device_id``, ``name``, ``data``: a JSON-able
        dict) to its device. May raise when the channel is down."""

    def close(self) -> None:
        """The server is stopping: let go of connections and threads."""


class EventSubscriber(Protocol):
    """The agent's half (``EventChannel.subscriber(options, device_id, wake)``)."""

    def start(self) -> None:
        """Begin listening in the background (a thread of its own) and return."""

    def close(self) -> None:
        """The agent is stopping: stop listening. ``wake`` must not be called after."""


# -- alert channels ----------------------------------------------------------------


class AlertSender(Protocol):
    """The server's sender of alerts (``AlertChannel.sender(options)``)."""

    def send(self, alerts: Sequence[Alert]) -> None:
        """Deliver a batch of alerts (one or more). Raise when they could not
        be delivered: the server retries the same batch with back-off. Give
        up within your own timeout rather than hang."""

    def close(self) -> None:
        """The server is stopping: let go of connections and threads."""


# -- drift fixes --------------------------------------------------------------------


class RepairKit(Protocol):
    """What a drift fix may ask of the agent (``CheckContext.repair``), for
    the release the device runs. ``ctx.repair`` is None where there is no
    agent to ask; a fix that needs it raises
    :class:`~fleetcore.errors.FleetcoreError` then."""

    def pristine(self) -> Path:
        """A folder with a fresh, verified copy of the running release,
        fetched again from the source (read it, do not change it)."""

    def restart(self) -> str:
        """Start the running release's services again through its activator;
        returns what was done, for the drift report."""

    def clean(self) -> Sequence[str]:
        """Remove old releases and staging leftovers; returns what went."""
