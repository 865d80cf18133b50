"""`agent enroll` writes `[server] url` into agent.toml: layout-keeping edits,
each checked by parsing, and refusals that print the lines to add."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from fleetcore.config.edit import EditRefused, plan_server_url, with_server_url, write_config
from fleetcore.testing.serverproc import FLEETCORE

URL = "https://fleet.example:8443"

AGENT = """\
# Device pi-001, kiosk in the lobby.
device_id = "pi-001"   # printed on the case
role = "web"
state_dir = "state"

[source]
repo = "/srv/fleet"    # the mirror on the LAN
"""


def test_a_server_table_is_appended_and_every_other_byte_kept() -> None:
    new = with_server_url(AGENT, URL)
    assert new == AGENT + f'\n[server]\nurl = "{URL}"\n'
    assert tomllib.loads(new)["server"] == {"url": URL}


def test_a_file_without_a_final_newline_gets_one_before_the_table() -> None:
    new = with_server_url(AGENT.rstrip("\n"), URL)
    assert tomllib.loads(new)["source"]["repo"] == "/srv/fleet"
    assert new.endswith(f'\n\n[server]\nurl = "{URL}"\n')


def test_an_existing_url_is_replaced_in_place_keeping_its_comment() -> None:
    text = AGENT + '\n[server]  # managed\nurl = "http://old:8080"  # staging\ntimeout = "5s"\n'
    new = with_server_url(text, URL)
    assert new == text.replace('"http://old:8080"', f'"{URL}"')


def test_a_server_table_without_url_gets_one_under_its_header() -> None:
    text = AGENT + '\n[server]\ntimeout = "5s"\n\n[throttle]\nmax_per_hour = 2\n'
    new = with_server_url(text, URL)
    assert f'[server]\nurl = "{URL}"\ntimeout = "5s"\n' in new
    assert tomllib.loads(new)["throttle"] == {"max_per_hour": 2}


def test_the_same_url_changes_nothing() -> None:
    text = AGENT + f'\n[server]\nurl = "{URL}"\n'
    assert with_server_url(text, URL) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (AGENT.replace("[source]", 'server = { url = "x" }\n\n[source]'), "not written as one"),
        ('server.url = "http://old"\n' + AGENT, "not written as one"),
        (AGENT + '\n[server]\nurl = """\nhttp://old"""\n', "not a one-line string"),
        (AGENT + "\n[source\n", "not valid TOML"),
        ('server = "http://x"\n', "not a table"),
    ],
)
def test_layouts_it_does_not_know_are_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        with_server_url(text, URL)


def test_refusal_names_the_file_and_the_exact_lines(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('server.url = "http://old"\n' + AGENT)
    with pytest.raises(EditRefused) as caught:
        plan_server_url(path, URL)
    assert str(path) in str(caught.value)
    assert caught.value.lines == f'[server]\nurl = "{URL}"'
    assert str(caught.value).endswith(caught.value.lines)


def test_the_write_is_atomic_and_keeps_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(AGENT)
    path.chmod(0o640)
    new = plan_server_url(path, URL)
    assert new is not None
    write_config(path, new)
    assert path.read_text() == new
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.toml"]
    assert plan_server_url(path, URL) is None


def test_enroll_refuses_before_enrolling_when_it_cannot_edit_the_config(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    # A url the loader accepts but no one-line edit can replace.
    text = AGENT + '\n[server]\nurl = """\nhttp://old.example"""\n'
    config.write_text(text)
    # No server listens there: the refusal must come before any request.
    out = subprocess.run(
        [*FLEETCORE, "agent", "enroll", "--config", str(config), "--server", "http://127.0.0.1:9",
         "--enrollment-token", "t"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    assert "cannot set [server] url" in out.stderr
    assert out.stderr.rstrip().endswith('[server]\nurl = "http://127.0.0.1:9"')
    assert "cannot reach" not in out.stderr and "127.0.0.1:9/" not in out.stderr
    assert not (tmp_path / "state" / "credential").exists()
    assert config.read_text() == text
