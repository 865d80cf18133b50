"""How `agent run` listens for the server's events: the channel
``[server] events`` selects, and polls alone when that channel is broken."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen

from fleetcore.agent import loop
from fleetcore.agent.agent import Agent
from fleetcore.agent.managed import EventListener
from fleetcore.config.agent import load_agent_config
from fleetcore.plugin import hookimpl
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import EventChannel


@frozen(kw_only=True)
class PigeonOptions:
    loft: str


class Pigeon:
    def __init__(self, options: PigeonOptions, device_id: str, wake: Any) -> None:
        self.options, self.device_id, self.wake = options, device_id, wake
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True


class Channels:
    @hookimpl
    def fleetcore_register_event_channels(self) -> Any:
        yield EventChannel(
            name="pigeon",
            summary="Carrier pigeons",
            config_type=PigeonOptions,
            publisher=lambda options: None,
            subscriber=Pigeon,
        )
        yield EventChannel(
            name="broken",
            summary="Never starts",
            publisher=lambda options: None,
            subscriber=lambda options, device_id, wake: 1 / 0,
        )


def agent(tmp_path: Path, events: str, extra: str = "") -> Agent:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "credential").write_text("fcd_test\n")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'device_id = "pi-7"\nrole = "web"\nstate_dir = "{state}"\n'
        f'[server]\nurl = "http://127.0.0.1:9"\nevents = {events}\n{extra}'
    )
    pm = PluginManager(entry_points=False)
    pm.register(Channels(), name="channels")
    return Agent(load_agent_config(config), pm=pm)


def test_the_selected_channel_is_started_with_its_options(tmp_path: Path) -> None:
    woken: list[str] = []
    listener = loop._listen(
        agent(tmp_path, '"pigeon"', '[events.pigeon]\nloft = "roof"\n'), woken.append
    )
    assert isinstance(listener, Pigeon) and listener.started
    assert (listener.options, listener.device_id) == (PigeonOptions(loft="roof"), "pi-7")
    listener.wake("update-available")
    assert woken == ["update-available"]


def test_sse_is_the_default_and_false_listens_to_nothing(tmp_path: Path) -> None:
    sse = loop._listen(agent(tmp_path, "true"), lambda _name: None)
    assert isinstance(sse, EventListener)
    sse.close()
    assert loop._listen(agent(tmp_path, "false"), lambda _name: None) is None


@pytest.mark.parametrize(
    ("events", "extra", "why"),
    [
        ('"broken"', "", "division by zero"),
        ('"nats"', "", "unknown event channel 'nats' @ server.events; installed: broken, pigeon"),
        ('"pigeon"', "", "required key missing @ events.pigeon.loft"),
    ],
)
def test_a_broken_channel_leaves_the_scheduled_polls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, events: str, extra: str, why: str
) -> None:
    with caplog.at_level(logging.ERROR, "fleetcore.agent"):
        assert loop._listen(agent(tmp_path, events, extra), lambda _name: None) is None
    [record] = caplog.records
    name = events.strip('"')
    assert record.getMessage().startswith(f"no events over {name}, scheduled polls only")
    assert why in record.getMessage()
