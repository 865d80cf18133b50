"""The Compose command lines, per version, without running Compose.

Only Compose v1 is installed where these tests run; devices in the field
mostly run v2. The version-dependent parts are pure functions of a
:class:`Compose` value and the release folder, so both versions are tested
here on the argument lists they produce; the v1 lists also run for real in
the Docker tests.
"""

from __future__ import annotations

import shutil

import pytest

from fleetcore.config.convert import structure
from fleetcore.config.units import Duration
from fleetcore.errors import ConfigError, FleetcoreError
from fleetcore.testing.services import missing
from fleetcore_docker import compose as cli
from fleetcore_docker.compose import Compose
from fleetcore_docker.options import ComposeConfigOptions, ComposeOptions, ContainersOptions

V2 = Compose(("docker", "compose"), (2, 24, 6))
V2_OLD = Compose(("docker", "compose"), (2, 12, 0))
V1 = Compose(("docker-compose",), (1, 29, 2))
V1_ANCIENT = Compose(("docker-compose",), (1, 21, 0))


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("2.24.6\n", (2, 24, 6)),
        ("v2.20.2-desktop.1\n", (2, 20, 2)),
        ("1.29.2\n", (1, 29, 2)),
        ("docker-compose version 1.25.0, build unknown\n", (1, 25, 0)),
        ("2.5\n", (2, 5, 0)),
        ("unknown flag: --short\n", None),
    ],
)
def test_parse_version(text, version):
    assert cli.parse_version(text) == version


def test_capabilities_by_version():
    assert (V2.major, V1.major) == (2, 1)
    assert V2.env_file_option and V2_OLD.env_file_option and V1.env_file_option
    assert not V1_ANCIENT.env_file_option
    assert V2.repeated_env_file_option
    assert not V2_OLD.repeated_env_file_option and not V1.repeated_env_file_option


def test_compose_file_names_and_override(tmp_path):
    assert cli.find_compose_file(tmp_path) is None
    assert not cli.has_compose_file(tmp_path)
    with pytest.raises(FleetcoreError, match="no compose file"):
        cli.command(V2, tmp_path, "up")
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    assert cli.compose_files(tmp_path) == (tmp_path / "docker-compose.yml",)
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    # Compose v2's order of preference: compose.yaml first.
    assert cli.compose_files(tmp_path) == (tmp_path / "compose.yaml",)
    (tmp_path / "compose.override.yml").write_text("services: {}\n")
    assert cli.compose_files(tmp_path) == (
        tmp_path / "compose.yaml",
        tmp_path / "compose.override.yml",
    )


def test_argv_v2_and_v1(tmp_path):
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    f = str(tmp_path / "docker-compose.yml")
    up = ("up", "-d", "--remove-orphans")
    assert cli.command(V2, tmp_path, *up, project="fleetcore-web") == [
        "docker",
        "compose",
        "-p",
        "fleetcore-web",
        "-f",
        f,
        *up,
    ]
    assert cli.command(V1, tmp_path, *up, project="fleetcore-web") == [
        "docker-compose",
        "-p",
        "fleetcore-web",
        "-f",
        f,
        *up,
    ]
    # Checks that need no project leave it out.
    assert cli.command(V2, tmp_path, "config", "-q") == [
        "docker",
        "compose",
        "-f",
        f,
        "config",
        "-q",
    ]


def test_project_names_are_normalised_as_compose_stores_them(tmp_path):
    (tmp_path / "compose.yml").write_text("services: {}\n")
    argv = cli.command(V2, tmp_path, "down", project="Fleetcore-Web.Cam")
    assert argv[argv.index("-p") + 1] == "fleetcore-webcam"
    assert cli.compose_project("-_fleetcore-a_b") == "fleetcore-a_b"


def test_env_files_by_version(tmp_path):
    (tmp_path / "compose.yml").write_text("services: {}\n")
    agent, role = tmp_path / cli.ENV_FILE, tmp_path / cli.ROLE_ENV_FILE
    for compose in (V2, V1, V1_ANCIENT):
        assert cli.env_files(compose, tmp_path) == ()  # no env file written by the agent
    agent.write_text("FLEETCORE_COMMIT=abc\n")
    assert cli.env_files(V2, tmp_path) == (agent,)
    assert cli.env_files(V1, tmp_path) == (agent,)
    assert cli.env_files(V1_ANCIENT, tmp_path) == ()  # no --env-file: the environment carries it
    # With the role's own .env: both where Compose takes several, else
    # neither, so Compose still reads the role's .env by default.
    role.write_text("TAG=1\n")
    assert cli.env_files(V2, tmp_path) == (role, agent)
    assert cli.env_files(V2_OLD, tmp_path) == ()
    assert cli.env_files(V1, tmp_path) == ()
    argv = cli.command(V2, tmp_path, "up")
    assert argv[-5:] == ["--env-file", str(role), "--env-file", str(agent), "up"]


def test_redact_hides_secrets_but_not_fleetcore_variables():
    env = {"FLEETCORE_ROLE": "web", "DB_PASSWORD": "hunter2!", "SHORT": "ab"}
    text = "role web: bad password hunter2! (ab)"
    assert cli.redact(text, env) == "role web: bad password *** (ab)"


def test_resolve_finds_the_installed_compose_and_caches_it():
    if shutil.which("docker-compose") is None and shutil.which("docker") is None:
        missing("Docker Compose")
    compose = cli.resolve("auto")
    assert compose.argv in cli.AUTO_CANDIDATES
    assert compose.major in (1, 2)
    assert cli.resolve("auto") is compose  # one probe per process


def test_resolve_names_what_it_tried():
    with pytest.raises(FleetcoreError, match="`no-such-compose-program`") as err:
        cli.resolve("no-such-compose-program")
    assert "Docker Compose is not available" in str(err.value)
    with pytest.raises(FleetcoreError):  # failures are not cached
        cli.resolve("no-such-compose-program")


def test_options_defaults_and_errors_name_their_key():
    assert structure({}, ComposeOptions, source="role.toml") == ComposeOptions(
        command="auto", pull=False, timeout=Duration(300), stop_timeout=Duration(10)
    )
    opts = structure(
        {"command": "docker-compose", "pull": True, "timeout": "2m", "stop_timeout": "3s"},
        ComposeOptions,
        source="role.toml",
    )
    assert (opts.command, opts.pull, opts.timeout, opts.stop_timeout) == (
        "docker-compose",
        True,
        Duration(120),
        Duration(3),
    )
    assert structure(
        {"observe": "0s", "health_timeout": "5s"}, ContainersOptions, source="role.toml"
    ).observe == Duration(0)
    cases = [
        (ComposeOptions, {"comand": "docker-compose"}, "comand"),
        (ComposeOptions, {"command": ""}, "command must be"),
        (ComposeOptions, {"command": "'docker"}, "not a valid command line"),
        (ComposeOptions, {"timeout": "0s"}, "timeout must be longer than 0s"),
        (ComposeOptions, {"pull": "yes"}, "expected true or false"),
        (ComposeConfigOptions, {"timeout": "soon"}, "expected a duration"),
        (ContainersOptions, {"observe": 2, "health": "1m"}, "health"),
        (ContainersOptions, {"observe": -1}, "observe must not be negative"),
    ]
    for cls, data, words in cases:
        with pytest.raises(ConfigError, match=words) as err:
            structure(data, cls, source="role.toml", root="activate")
        assert "@ activate" in str(err.value)
