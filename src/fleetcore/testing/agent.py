"""A real agent in the test process, for plugin packages' end-to-end tests.

Plugins import only fleetcore's public API; their tests still need a whole
device now and then (an agent that fetches, verifies, decrypts, activates).
This is the one door to it, so a plugin's test helpers never import the
agent's modules themselves::

    from fleetcore.testing.agent import ManualClock, local_agent

    agent = local_agent(tmp_path / "agent.toml", clock=ManualClock())
    assert agent.once().outcome == "updated"
"""

from __future__ import annotations

from pathlib import Path

from fleetcore.agent.agent import Agent
from fleetcore.agent.clock import Clock, ManualClock
from fleetcore.config.agent import load_agent_config

__all__ = ["Agent", "Clock", "ManualClock", "local_agent"]


def local_agent(config_path: Path, *, clock: Clock | None = None) -> Agent:
    """The agent ``agent.toml`` at ``config_path`` describes, run in this process."""
    return Agent(load_agent_config(config_path), clock=clock)
