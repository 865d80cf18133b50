"""``agent.toml``: who the device is, where its fleet repo is, how often it may update."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from attrs import field, frozen

from fleetcore.config.convert import (
    KeyedValueError,
    checked,
    load_toml,
    not_empty,
    one_of,
    split_table,
    structure,
)
from fleetcore.config.units import Duration, Size
from fleetcore.model import SEGMENTS

SOURCE_CORE_KEYS = ("repo", "branch", "fetcher")

# The seed's defaults: battery nodes wake every 15-60 minutes, mains-powered
# gear every 30-120 seconds.
DEFAULT_UPDATE_INTERVAL = {"mains": Duration(60.0), "battery": Duration(30 * 60.0)}

LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
MAX_LABELS = 32
MAX_LABEL_VALUE = 200


def valid_labels(_inst: Any, attr: Any, value: Mapping[str, Any] | None) -> None:
    """``[labels]`` (agent.toml) and the ``labels`` the server takes: string
    keys of letters, digits, '.', '_' and '-' (at most 63), string values of
    at most 200 characters, at most 32 labels. An error names the key."""
    if value is None:
        return
    if len(value) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} {attr.name}, got {len(value)}")
    for key, text in value.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise KeyedValueError(
                str(key),
                f"a label's key must be letters, digits, '.', '_' or '-' (at most 63), got {key!r}",
            )
        if not isinstance(text, str):
            raise KeyedValueError(key, f"a label's value must be a string, got {text!r}")
        if len(text) > MAX_LABEL_VALUE:
            raise KeyedValueError(
                key, f"a label's value is at most {MAX_LABEL_VALUE} characters, got {len(text)}"
            )


@frozen(kw_only=True)
class Source:
    repo: str = field(validator=checked(not_empty))
    branch: str = "main"
    fetcher: str = "git"
    options: dict[str, Any] = field(factory=dict)
    """Every other key of ``[source]``: the fetcher's own options."""


@frozen(kw_only=True)
class Throttle:
    min_interval: Duration = Duration(300.0)
    failure_pause: Duration = Duration(900.0)
    max_per_hour: int = 1
    max_failures: int = 3


@frozen(kw_only=True)
class Retry:
    """Retries of a fetch that failed on the network: exponential back-off with jitter."""

    attempts: int = 3
    backoff: Duration = Duration(2.0)
    max_backoff: Duration = Duration(300.0)


@frozen(kw_only=True)
class Disk:
    reserve: Size = Size(500 * 1024**2)
    """Free space to keep beyond twice the archive (the seed's 500 MB margin)."""
    keep_releases: int = 2
    """Releases kept on disk (current and previous), others are cleaned."""
    max_release_size: Size = Size(2 * 1024**3)
    """The largest role the agent will unpack: a guard against archive bombs."""


@frozen(kw_only=True)
class Drift:
    """``[drift]``: how often the device compares itself with its release."""

    light_interval: Duration = Duration(300.0)
    """Light checks (sizes, times, containers, disk): every 5 minutes."""
    deep_interval: Duration = Duration(3600.0)
    """Deep checks (file contents, clock, DNS): every hour."""
    fix: bool = True
    """Repair what drifted; with false, only report it."""
    fixes: dict[str, dict[str, Any]] = field(factory=dict)
    """``[drift.fixes.NAME]``: options of drift fixes (e.g. the command that
    syncs the clock). Device settings: a fleet repo does not choose them."""


@frozen(kw_only=True)
class Partition:
    """``[partition]``: how the agent rides out a fleet repo it cannot reach
    (the seed's short, medium, long and permanent partitions)."""

    disconnected_after: Duration = Duration(300.0)
    isolated_after: Duration = Duration(3600.0)
    airgapped_after: Duration = Duration(86400.0)
    isolated_retry: Duration = Duration(300.0)
    """While isolated, try the repo this often."""
    airgapped_probe: Duration = Duration(3600.0)
    """While airgapped, no update attempts; only this cheap probe for the network."""


BRANCH_RE = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/-]{0,254}$")


def valid_branch(_inst: Any, attr: Any, value: str | None) -> None:
    """A branch name a device may follow: letters, digits, '.', '_', '-' and
    '/', at most 255, not starting with '-' or '/'."""
    if value is not None and (not BRANCH_RE.match(value) or ".." in value):
        raise ValueError(
            f"{attr.name} must be a branch name like 'staging' or 'ring/lab', got {value!r}"
        )


def _channel(_inst: Any, attr: Any, value: str | None) -> None:
    if value is not None and (not value or not all(c.isalnum() or c in "-_." for c in value)):
        raise ValueError(
            f'{attr.name} must be "sse", the name of an event channel or false, got {value!r}'
        )


@frozen(kw_only=True)
class Server:
    """``[server]``: managed mode. The control server decides the desired
    state; the device reports its status and wakes on the server's events."""

    url: str = field(validator=checked(not_empty))
    credential_file: Path | None = None
    """Written by `fleetcore agent enroll` (mode 0600); default: in the state folder."""
    report_interval: Duration = Duration(60.0)
    events: str | None = field(default="sse", validator=checked(_channel))
    """Where the agent hears that it should update at once: ``"sse"`` (the
    server's own event stream; ``true`` means the same), the name of an
    event-channel plugin (``"mqtt"``, configured in ``[events.NAME]``), or
    none (``false``: scheduled polls only)."""
    timeout: Duration = Duration(15.0)
    ca_file: Path | None = None
    branch: str | None = field(default=None, validator=checked(valid_branch))
    """Follow this branch's head instead of rollouts (a staging device). The
    server's override (``fleetcore fleet override --branch``) wins over it.
    Sent with the enrollment and every status report."""
    max_desired_age: Duration = Duration(86400.0)
    """The oldest server time a desired state may carry: an older answer
    (a proxy or an attacker replaying the past) makes the device report
    ``stale_desired_state`` (freeze protection)."""


@frozen(kw_only=True)
class Verify:
    """``[verify]`` in ``agent.toml``."""

    max_age: Duration | None = None
    """Git-only mode: when the branch head's commit is older than this, the
    device reports ``stale_desired_state`` (a frozen mirror; the fleet can
    publish a signed heartbeat commit to stay fresh)."""
    checks: dict[str, dict[str, Any]] = field(factory=dict)
    """``[verify.NAME]`` tables: options of verify checks; naming one turns it
    on (``[verify.signature]``: the trust root lives on the device, never in
    the repo it protects)."""


@frozen(kw_only=True)
class Reboot:
    """``[reboot]``: how the device reboots for a release whose role says
    ``requires_reboot = true`` (such updates wait for the maintenance window)."""

    command: tuple[str, ...] = ()
    """E.g. ``["systemctl", "reboot"]``: run after the release is activated;
    the agent checks its health after the reboot, from its state. Empty: no
    reboot (the update still waits for the window)."""


@frozen(kw_only=True)
class Plugins:
    disable: tuple[str, ...] = ()


@frozen(kw_only=True)
class AgentConfig:
    device_id: str = field(validator=checked(not_empty))
    role: str = field(validator=checked(not_empty))
    state_dir: Path
    source: Source | None = None
    """Where releases come from; in managed mode without it, from the server."""
    server: Server | None = None
    segment: str = field(default="general", validator=checked(one_of(*SEGMENTS)))
    power: Literal["mains", "battery"] = "mains"
    update_interval: Duration | None = None
    """Overrides the role's ``update_interval`` and the power-class default."""
    log_format: Literal["text", "json"] = "text"
    throttle: Throttle = Throttle()
    retry: Retry = Retry()
    disk: Disk = Disk()
    drift: Drift = Drift()
    partition: Partition = Partition()
    reboot: Reboot = Reboot()
    plugins: Plugins = Plugins()
    secrets: dict[str, dict[str, Any]] = field(factory=dict)
    """``[secrets.NAME]`` tables: each secrets provider's device settings."""
    verify: Verify = field(factory=Verify)
    """``[verify]``: what the device itself requires of a release."""
    events: dict[str, dict[str, Any]] = field(factory=dict)
    """``[events.NAME]`` tables: the options of event channels (the one
    ``[server] events`` selects is used)."""
    labels: dict[str, str] = field(factory=dict, validator=checked(valid_labels))
    """``[labels]``: what the device is (``hardware = "pi4"``), sent to the
    server with the enrollment and every status report."""
    path: Path | None = None
    """Where this config was read from (not a key)."""


def parse_agent_config(data: dict[str, Any], source: str, base: Path | None = None) -> AgentConfig:
    data = dict(data)
    server = data.get("server")
    if isinstance(server, dict) and isinstance(server.get("events"), bool):
        # `events = true` predates channels: it meant the SSE stream.
        data["server"] = {**server, "events": "sse" if server["events"] else None}
    if isinstance(data.get("source"), dict):
        core, rest = split_table(data["source"], SOURCE_CORE_KEYS)
        data["source"] = {**core, "options": rest}
    if isinstance(data.get("verify"), dict):
        core, rest = split_table(data["verify"], ("max_age",))
        data["verify"] = {**core, "checks": rest}
    config = structure(data, AgentConfig, source=source)
    if config.source is None and config.server is None:
        from fleetcore.errors import ConfigError

        raise ConfigError(source, ["give [source] (git-only mode) or [server] (managed mode)"])
    # Relative paths in agent.toml are relative to the file, not to wherever
    # the agent happens to be started from.
    if base is not None and not config.state_dir.is_absolute():
        config = _evolve(config, state_dir=(base / config.state_dir).resolve())
    repo = config.source.repo if config.source is not None else ""
    if base is not None and repo and "://" not in repo and not Path(repo).is_absolute():
        candidate = (base / repo).resolve()
        if candidate.exists():
            config = _evolve(config, source=_evolve(config.source, repo=str(candidate)))
    if base is not None and config.server is not None:
        credential = config.server.credential_file
        if credential is not None and not credential.is_absolute():
            config = _evolve(
                config, server=_evolve(config.server, credential_file=(base / credential))
            )
    return config


def load_agent_config(path: Path) -> AgentConfig:
    config = parse_agent_config(load_toml(path), str(path), base=path.parent.resolve())
    return _evolve(config, path=path)


def _evolve(obj: Any, **changes: Any) -> Any:
    import attrs

    return attrs.evolve(obj, **changes)
