from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from fleetcore.config.convert import structure
from fleetcore.config.units import Duration
from fleetcore.errors import ConfigError, FleetcoreError
from fleetcore.testing.contracts import check_activator_record
from fleetcore_checks import script
from fleetcore_checks.script import ScriptActivator, ScriptOptions


def record():
    (rec,) = script.fleetcore_register_activators()
    return rec


def test_record_keeps_the_activator_contract():
    rec = record()
    assert (rec.name, rec.priority) == ("script", 10)
    impl = check_activator_record(rec, example={"timeout": "10m"})
    assert impl.options.timeout == Duration(600.0)


def test_detect_needs_activate_sh(release_dir, write_script):
    rec = record()
    assert rec.detect is not None
    assert not rec.detect(release_dir)
    write_script("deactivate.sh", "true\n")
    assert not rec.detect(release_dir)
    write_script("activate.sh", "true\n")
    assert rec.detect(release_dir)


def test_start_runs_activate_sh_in_the_release_with_the_fleetcore_env(
    release_dir, write_script, activation_ctx, tmp_path, monkeypatch
):
    monkeypatch.setenv("AGENT_SIDE_VARIABLE", "from-the-agent")
    out = tmp_path / "seen.txt"
    write_script(
        "activate.sh",
        f"""pwd > {out}
for v in FLEETCORE_RELEASE_DIR FLEETCORE_COMMIT FLEETCORE_ROLE FLEETCORE_DEVICE_ID \\
         AGENT_SIDE_VARIABLE; do
  eval "echo $v=\\$$v" >> {out}
done
""",
    )
    ctx = activation_ctx()
    ScriptActivator(ScriptOptions()).start(ctx)

    lines = out.read_text().splitlines()
    assert Path(lines[0]).resolve() == release_dir.resolve()
    seen = dict(line.split("=", 1) for line in lines[1:])
    assert seen == {**ctx.env, "AGENT_SIDE_VARIABLE": "from-the-agent"}
    assert seen["FLEETCORE_DEVICE_ID"] == "pi-kitchen-07"


def test_stop_runs_deactivate_sh_of_that_release(write_script, activation_ctx, tmp_path):
    marker = tmp_path / "stopped"
    write_script("activate.sh", "exit 1\n")
    write_script("deactivate.sh", f'echo "$FLEETCORE_COMMIT" > {marker}\n')
    ctx = activation_ctx()
    ScriptActivator(ScriptOptions()).stop(ctx)
    assert marker.read_text().strip() == ctx.commit


def test_stop_without_deactivate_sh_does_nothing(write_script, activation_ctx, tmp_path):
    marker = tmp_path / "started"
    write_script("activate.sh", f"touch {marker}\n")
    ScriptActivator(ScriptOptions()).stop(activation_ctx())
    assert not marker.exists()


def test_a_failing_script_names_itself_its_exit_code_and_its_last_lines(
    write_script, activation_ctx
):
    write_script(
        "activate.sh",
        'for i in $(seq 1 20); do echo "step $i"; done\necho "port 8080 in use" >&2\nexit 3\n',
    )
    with pytest.raises(FleetcoreError) as caught:
        ScriptActivator(ScriptOptions()).start(activation_ctx())
    message = str(caught.value)
    assert message.startswith("activate.sh failed (exit 3): ")
    assert message.endswith("step 17 | step 18 | step 19 | step 20 | port 8080 in use")
    assert "step 16" not in message


def test_a_failing_deactivate_sh_is_an_error_too(write_script, activation_ctx):
    write_script("deactivate.sh", "echo cannot stop; exit 5\n")
    with pytest.raises(FleetcoreError, match=r"deactivate.sh failed \(exit 5\): cannot stop"):
        ScriptActivator(ScriptOptions()).stop(activation_ctx())


def test_a_script_past_its_timeout_is_stopped_with_what_it_started(
    write_script, activation_ctx, tmp_path
):
    pid_file = tmp_path / "child.pid"
    write_script("activate.sh", f"echo starting\nsleep 30 &\necho $! > {pid_file}\nwait\n")
    began = time.monotonic()
    with pytest.raises(FleetcoreError) as caught:
        ScriptActivator(ScriptOptions(timeout=Duration(0.5))).start(activation_ctx())
    assert time.monotonic() - began < 5
    assert str(caught.value) == "activate.sh timed out after 0.5s: starting"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the background child of a timed-out script is still running"


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        # A zombie has exited; it only waits for its parent to notice.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_services_left_running_in_the_background_do_not_hold_up_activation(
    write_script, activation_ctx, tmp_path
):
    pid_file = tmp_path / "service.pid"
    # A "service" that keeps the script's output open and outlives it.
    write_script("activate.sh", f"sleep 30 &\necho $! > {pid_file}\necho started\n")
    began = time.monotonic()
    try:
        ScriptActivator(ScriptOptions(timeout=Duration(10.0))).start(activation_ctx())
        assert time.monotonic() - began < 3
        assert _alive(int(pid_file.read_text()))
    finally:
        import os
        import signal

        os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_script_without_the_executable_bit_is_refused(write_script, activation_ctx, tmp_path):
    marker = tmp_path / "ran"
    write_script("activate.sh", f"touch {marker}\n", executable=False)
    with pytest.raises(FleetcoreError, match=r"activate\.sh is not executable.*--chmod=\+x"):
        ScriptActivator(ScriptOptions()).start(activation_ctx())
    assert not marker.exists()


def test_start_without_activate_sh_says_so(activation_ctx):
    with pytest.raises(FleetcoreError, match=r"activate\.sh not found"):
        ScriptActivator(ScriptOptions()).start(activation_ctx())


def test_the_environment_is_never_logged(write_script, activation_ctx, caplog):
    write_script("activate.sh", "exit 1\n")
    ctx = activation_ctx(env={"FLEETCORE_COMMIT": "abc", "DB_PASSWORD": "hunter2-secret"})
    with caplog.at_level(logging.DEBUG), pytest.raises(FleetcoreError):
        ScriptActivator(ScriptOptions()).start(ctx)
    assert caplog.records, "expected the activator to log what it runs"
    assert all("hunter2-secret" not in r.getMessage() for r in caplog.records)


def test_options_errors_name_the_key():
    assert structure({"timeout": "2m"}, ScriptOptions, source="role.toml").timeout.seconds == 120
    with pytest.raises(ConfigError) as caught:
        structure({"timeout": "0s"}, ScriptOptions, source="role.toml", root="activate")
    assert caught.value.problems == ("timeout must be longer than 0s, got 0s @ activate.timeout",)
    with pytest.raises(ConfigError) as caught:
        structure({"timout": "1m"}, ScriptOptions, source="role.toml", root="activate")
    assert caught.value.problems == ("unknown keys (timout) @ activate",)
