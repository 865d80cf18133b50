"""The channel's options and the topic and payload contract.

The same options serve both halves: ``[events.mqtt]`` in ``agent.toml``,
and ``--events mqtts://broker:8883?username=fleet-server&ca_file=...`` on the
server (query parameters become keys).

Topic: ``<topic_prefix>/devices/<device_id>/events``. Payload: JSON
``{"event": "update-available", "data": {"commit": "..."}}``, QoS 1, never
retained (a retained event would wake the device on every reconnect).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from attrs import field, frozen

from fleetcore.plugin.options import Duration, checked

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
WILDCARDS = frozenset("+#")


def _url(_inst: Any, attr: Any, value: str) -> None:
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - parsing it raises on a bad port
    except ValueError:
        raise ValueError(f"{attr.name} has a bad port: {value!r}") from None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{attr.name} must look like mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    if parts.username or parts.password:
        # A URL is printed in logs and shown in `ps`: credentials go elsewhere.
        raise ValueError(f"{attr.name} must not hold credentials: give username and password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{attr.name} must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT] alone")


def _prefix(_inst: Any, attr: Any, value: str) -> None:
    if not value or value.startswith("/") or value.endswith("/") or WILDCARDS & set(value):
        raise ValueError(
            f"{attr.name} must be a topic like 'fleetcore' or 'site-a/fleetcore' "
            f"(no wildcards, no leading or trailing '/'), got {value!r}"
        )


def _readable(_inst: Any, attr: Any, value: Path | None) -> None:
    if value is not None and not value.is_file():
        raise ValueError(f"{attr.name} {str(value)!r} is not a file")


def _password_file(inst: Any, attr: Any, value: Path | None) -> None:
    if value is not None and inst.password is not None:
        raise ValueError(f"give password or {attr.name}, not both")
    _readable(inst, attr, value)


def _ca_file(inst: Any, attr: Any, value: Path | None) -> None:
    if value is not None and not inst.url.startswith("mqtts://"):
        raise ValueError(f"{attr.name} needs an mqtts:// url")
    _readable(inst, attr, value)


def _keepalive(_inst: Any, attr: Any, value: Duration) -> None:
    if not 5 <= value.seconds <= 65535:
        raise ValueError(f"{attr.name} must be between 5s and 65535s, got {value}")


@frozen(kw_only=True)
class MqttOptions:
    """``[events.mqtt]`` in ``agent.toml``; the ``--events`` URL on the server."""

    url: str = field(validator=checked(_url))
    """The broker: ``mqtt://HOST[:PORT]`` (default port 1883) or
    ``mqtts://HOST[:PORT]`` (TLS, default port 8883)."""
    topic_prefix: str = field(default="fleetcore", validator=checked(_prefix))
    username: str | None = None
    password: str | None = None
    password_file: Path | None = field(default=None, validator=checked(_password_file))
    """A file holding the password (keeps it out of ``agent.toml`` and ``ps``)."""
    ca_file: Path | None = field(default=None, validator=checked(_ca_file))
    """CA certificates for an mqtts:// broker; default: the system's."""
    keepalive: Duration = field(default=Duration(60.0), validator=checked(_keepalive))
    """Seconds between pings: how soon a dead connection is noticed."""

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or DEFAULT_PORTS[parts.scheme]

    @property
    def tls(self) -> bool:
        return self.url.startswith("mqtts://")

    @property
    def label(self) -> str:
        return f"{urlsplit(self.url).scheme}://{self.host}:{self.port}"

    def secret(self) -> str | None:
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password


def topic(prefix: str, device_id: str) -> str:
    if not device_id or "/" in device_id or WILDCARDS & set(device_id):
        raise ValueError(f"device id {device_id!r} cannot be part of an MQTT topic")
    return f"{prefix}/devices/{device_id}/events"


def every_device_topic(prefix: str) -> str:
    """The topic filter matching every device's events."""
    return f"{prefix}/devices/+/events"


def device_of(prefix: str, topic_name: str) -> str | None:
    """The device id in a device's event topic; None for any other topic."""
    head, tail = f"{prefix}/devices/", "/events"
    if not (topic_name.startswith(head) and topic_name.endswith(tail)):
        return None
    device_id = topic_name[len(head) : -len(tail)]
    return device_id if device_id and "/" not in device_id else None


def encode(name: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"event": name, "data": data}, separators=(",", ":")).encode()


def decode(payload: bytes) -> tuple[str, dict[str, Any]] | None:
    """The event's name and data; None for anything else."""
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("event"), str):
        return None
    data = message.get("data")
    return message["event"], data if isinstance(data, dict) else {}
