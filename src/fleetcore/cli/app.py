"""The application object every command receives (``ctx.obj``).

It carries the global options and builds expensive things (the plugin
manager, configs) only when a command asks: ``fleetcore --help`` and
``fleetcore agent status`` must not pay for loading every plugin.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from fleetcore.config.agent import AgentConfig
    from fleetcore.plugin.manager import PluginManager


class App:
    def __init__(
        self,
        *,
        debug: bool = False,
        log_format: str | None = None,
        log_level: str = "INFO",
        plugins: PluginManager | None = None,
    ) -> None:
        self.debug = debug
        self.log_format = log_format
        self.log_level = log_level
        self._pm = plugins
        """Given by tests and embedding applications; else built on first use."""

    def plugins(self, disabled: tuple[str, ...] = ()) -> PluginManager:
        if self._pm is None:
            from fleetcore.plugin.manager import PluginManager

            self._pm = PluginManager(disabled=disabled)
        return self._pm

    def agent_config(self, path: Path) -> AgentConfig:
        from fleetcore.config.agent import load_agent_config

        config = load_agent_config(path)
        self.setup_logging(config.log_format)
        return config

    def setup_logging(self, configured: str = "text") -> None:
        from fleetcore.agent import logs

        logs.configure(self.log_format or configured, "DEBUG" if self.debug else self.log_level)

    @staticmethod
    def print_json(data: Any) -> None:
        click.echo(json.dumps(data, indent=2, default=str))

    @staticmethod
    def abort(message: str, code: int = 1) -> NoReturn:
        click.echo(f"error: {message}", err=True)
        sys.exit(code)
