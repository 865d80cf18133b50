"""Plugins add commands to ``fleetcore`` (``fleetcore_register_commands``)."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from fleetcore.cli.app import App
from fleetcore.cli.main import CORE_COMMANDS, cli
from fleetcore.errors import PluginError
from fleetcore.plugin import hookimpl
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.types import CliCommand

loaded: list[str] = []


def _hello() -> click.Command:
    loaded.append("hello")

    @click.command()
    @click.argument("who")
    @click.pass_obj
    def hello(app: App, who: str) -> None:
        """Greet someone."""
        app.print_json({"hello": who, "plugins": [i.name for i in app.plugins().plugins()]})

    return hello


class Greeter:
    @hookimpl
    def fleetcore_register_commands(self) -> list[CliCommand]:
        return [CliCommand(name="hello", summary="Greet someone", factory=_hello)]


def app_with(*plugins: tuple[str, object]) -> App:
    pm = PluginManager(entry_points=False)
    for name, plugin in plugins:
        pm.register(plugin, name=name)
    return App(plugins=pm)


def run(app: App, *args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), obj=app)


def test_a_plugin_adds_a_command() -> None:
    loaded.clear()
    app = app_with(("greeter", Greeter()))
    result = run(app, "hello", "world")
    assert result.exit_code == 0, result.output
    assert '"hello": "world"' in result.output
    assert '"greeter"' in result.output
    # Listed in --help from its record, without building the command.
    loaded.clear()
    helped = run(app, "--help")
    assert "Commands added by plugins" in helped.output
    assert "hello  Greet someone" in helped.output
    assert loaded == []
    # And shown by `fleetcore plugins`.
    listed = run(app, "plugins")
    assert "command: hello" in listed.output


def test_a_core_command_loads_no_plugin_command() -> None:
    loaded.clear()
    app = app_with(("greeter", Greeter()))
    assert run(app, "config", "--help").exit_code == 0
    assert loaded == []


def test_a_plugin_command_cannot_take_a_core_name() -> None:
    class Squatter:
        @hookimpl
        def fleetcore_register_commands(self) -> list[CliCommand]:
            return [CliCommand(name="agent", summary="Mine", factory=_hello)]

    app = app_with(("greeter", Greeter()), ("squatter", Squatter()))
    result = run(app, "hello", "world")
    assert isinstance(result.exception, PluginError)
    message = str(result.exception)
    assert "plugin squatter registers the command 'agent'" in message
    assert "the core's `fleetcore agent`" in message
    # The core's own group still works: it never looks at plugin commands.
    assert run(app, "agent", "--help").exit_code == 0


def test_two_plugins_with_one_command_name_are_named() -> None:
    app = app_with(("greeter", Greeter()), ("other", type("Other", (Greeter,), {})()))
    result = run(app, "hello", "x")
    assert isinstance(result.exception, PluginError)
    assert "command 'hello' is registered by both greeter and other" in str(result.exception)


def test_a_well_known_command_names_its_package() -> None:
    result = run(app_with(), "secrets", "keygen")
    assert result.exit_code == 2
    assert (
        "No such command 'secrets': it is added by the plugin package fleetcore-age "
        "(pip install fleetcore-age, or fleetcore[device])"
    ) in result.output
    unknown = run(app_with(), "nonsense")
    assert unknown.exit_code == 2
    assert "No such command 'nonsense'" in unknown.output


@pytest.mark.parametrize("name", ["", "-x", "two words", "a/b"])
def test_command_names_are_words(name: str) -> None:
    with pytest.raises(ValueError, match="command names are words"):
        CliCommand(name=name, summary="", factory=_hello)


def test_a_core_command_imports_no_plugin_at_all() -> None:
    """Finding `fleetcore agent ...` builds no plugin manager: the agent
    builds its own after reading agent.toml (and its [plugins] disable)."""
    code = (
        "import sys\n"
        "sys.argv = ['fleetcore', 'agent', '--help']\n"
        "from fleetcore.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "loaded = [m for m in sys.modules if m.startswith(('fleetcore_', 'fleetcore.plugin.'))]\n"
        "print(sorted(loaded), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "[]"
    assert "secrets" not in CORE_COMMANDS
