"""Configuration errors name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetcore.config.agent import load_agent_config
from fleetcore.config.fleet import parse_fleet_policy
from fleetcore.config.role import parse_role_config
from fleetcore.config.units import Duration, Size
from fleetcore.errors import ConfigError

MINIMAL = 'device_id = "pi-1"\nrole = "web"\nstate_dir = "state"\n[source]\nrepo = "/srv/fleet"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_minimal_agent_config_gets_the_seed_defaults(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, MINIMAL))
    assert config.throttle.min_interval == Duration(300)
    assert config.throttle.failure_pause == Duration(900)
    assert (config.throttle.max_per_hour, config.throttle.max_failures) == (1, 3)
    assert config.source.branch == "main" and config.source.fetcher == "git"
    # relative to the file, not to the working directory
    assert config.state_dir == tmp_path / "state"


def test_every_problem_is_reported_with_file_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL.replace('role = "web"\n', "")
        + '[throttle]\nmin_interval = "soon"\nmax_per_hour = "two"\nbogus = 1\n',
    )
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    text = str(info.value)
    assert str(path) in text
    assert (
        "expected a duration like '30s', '5m' or '1h', got 'soon' @ throttle.min_interval" in text
    )
    assert "expected a whole number, got 'two' @ throttle.max_per_hour" in text
    assert "unknown keys (bogus) @ throttle" in text
    assert "required key missing @ role" in text


def test_validator_errors_keep_their_path() -> None:
    with pytest.raises(
        ConfigError,
        match=r"segment must be one of canary, early, general, "
        r"got 'canry' @ segment",
    ):
        from fleetcore.config.agent import parse_agent_config

        parse_agent_config(
            {
                "device_id": "a",
                "role": "r",
                "state_dir": "/s",
                "source": {"repo": "x"},
                "segment": "canry",
            },
            "agent.toml",
        )


def test_fetcher_options_are_kept_for_the_plugin(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, MINIMAL + "depth = 5\n"))
    assert config.source.options == {"depth": 5}


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"agent.toml: not valid TOML: .*line 1"):
        load_agent_config(write(tmp_path, "device_id = \n"))


def test_fleet_policy_errors_name_nested_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse_fleet_policy(
            b'[forced_version]\nreason = "x"\nexpires = "tomorrow"\n'
            b'[maintenance_window]\nstart = "25:00"\n',
            "fleet.toml@abc",
        )
    text = str(info.value)
    assert "required key missing @ forced_version.commit" in text
    assert "got 'tomorrow' @ forced_version.expires" in text
    assert "expected a time of day like '02:00', got '25:00' @ maintenance_window.start" in text


def test_role_config_keeps_check_options_apart() -> None:
    role = parse_role_config(
        b'[health]\nsettle = "2s"\nchecks = ["http"]\n'
        b'[health.http]\nurl = "http://127.0.0.1:8080/"\n',
        "role.toml",
    )
    assert role.health.settle == Duration(2)
    assert role.health.checks == ("http",)
    assert role.health.options == {"http": {"url": "http://127.0.0.1:8080/"}}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), ("250ms", 0.25), (10, 10)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert Duration.parse(text).seconds == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500M", 500 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1.5k", 1536),
        (1024, 1024),
        ("10MB", 10 * 1024**2),
    ],
)
def test_sizes(text: str | int, size: int) -> None:
    assert Size.parse(text).bytes == size


MANAGED = 'device_id = "pi-1"\nrole = "web"\nstate_dir = "state"\n[server]\nurl = "http://x"\n'


@pytest.mark.parametrize(
    ("line", "events"),
    [("", "sse"), ("events = true", "sse"), ("events = false", None), ('events = "mqtt"', "mqtt")],
)
def test_server_events_choose_a_channel(tmp_path: Path, line: str, events: str | None) -> None:
    config = load_agent_config(
        write(tmp_path, f"{MANAGED}{line}\n[events.mqtt]\nurl = 'mqtt://b'\n")
    )
    assert config.server is not None and config.server.events == events
    assert config.events == {"mqtt": {"url": "mqtt://b"}}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("events = 1", "expected a string, got 1 @ server.events"),
        (
            'events = "mq tt"',
            "events must be \"sse\", the name of an event channel or false, got 'mq tt' "
            "@ server.events",
        ),
    ],
)
def test_server_events_errors_name_the_key(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_agent_config(write(tmp_path, f"{MANAGED}{line}\n"))
    assert caught.value.problems == (problem,)


def test_labels_are_a_table_of_strings(tmp_path: Path) -> None:
    config = load_agent_config(
        write(tmp_path, f'{MINIMAL}[labels]\nhardware = "pi4"\n"site.zone-1_a" = "eu west"\n')
    )
    assert config.labels == {"hardware": "pi4", "site.zone-1_a": "eu west"}
    assert load_agent_config(write(tmp_path, MINIMAL)).labels == {}


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("hardware = 4", "a label's value must be a string, got 4 @ labels.hardware"),
        ('"has space" = "x"', "(at most 63), got 'has space' @ labels.has space"),
        (f'{"k" * 64} = "x"', "(at most 63), got '" + "k" * 64 + "' @ labels." + "k" * 64),
        (f'hardware = "{"x" * 201}"', "at most 200 characters, got 201 @ labels.hardware"),
        ("\n".join(f'k{i} = "v"' for i in range(33)), "at most 32 labels, got 33 @ labels"),
        ("[labels.hardware]\nmodel = 'pi4'", "got {'model': 'pi4'} @ labels.hardware"),
    ],
)
def test_label_errors_name_the_key(tmp_path: Path, table: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_agent_config(write(tmp_path, f"{MINIMAL}[labels]\n{table}\n"))
    (only,) = caught.value.problems
    assert only.endswith(problem), only


def test_labels_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_agent_config(write(tmp_path, f'labels = "hardware=pi4"\n{MINIMAL}'))
    assert caught.value.problems == ("expected a table of strings, got 'hardware=pi4' @ labels",)


def test_a_managed_device_may_follow_a_branch(tmp_path: Path) -> None:
    config = load_agent_config(write(tmp_path, f'{MANAGED}branch = "ring/lab-1"\n'))
    assert config.server is not None and config.server.branch == "ring/lab-1"
    default = load_agent_config(write(tmp_path, MANAGED)).server
    assert default is not None and default.branch is None
    for bad in ("-x", "a..b", "has space", ""):
        with pytest.raises(ConfigError) as caught:
            load_agent_config(write(tmp_path, f'{MANAGED}branch = "{bad}"\n'))
        (only,) = caught.value.problems
        assert only.endswith(f"got {bad!r} @ server.branch"), only
