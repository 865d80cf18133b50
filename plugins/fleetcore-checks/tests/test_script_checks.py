from __future__ import annotations

import time

import pytest

from fleetcore.config.convert import structure
from fleetcore.config.units import Duration
from fleetcore.errors import ConfigError
from fleetcore.plugin.types import Finding
from fleetcore.testing.contracts import check_check_record
from fleetcore_checks import health_script, validate_script
from fleetcore_checks.health_script import HealthScriptOptions
from fleetcore_checks.validate_script import ValidateScriptOptions


def validate_record():
    (rec,) = validate_script.fleetcore_register_validate_checks()
    return rec


def health_record():
    (rec,) = health_script.fleetcore_register_health_checks()
    return rec


def test_records_keep_the_check_contract():
    assert check_check_record(validate_record()) == ValidateScriptOptions()
    assert check_check_record(health_record(), example={"timeout": "1m"}) == HealthScriptOptions(
        timeout=Duration(60.0)
    )
    assert (validate_record().name, health_record().name) == ("validate-script", "health-script")


# -- validate-script -------------------------------------------------------------


def test_validate_applies_only_when_the_release_has_validate_sh(check_ctx, write_script):
    rec = validate_record()
    ctx = check_ctx("validate", ValidateScriptOptions())
    assert rec.applies is not None
    assert not rec.applies(ctx)
    write_script("health.sh", "true\n")
    assert not rec.applies(ctx)
    write_script("validate.sh", "true\n")
    assert rec.applies(ctx)


def test_validate_passes_when_validate_sh_exits_0(check_ctx, write_script):
    # Fails (exit 1) unless it runs in the release folder with the fleetcore env.
    write_script(
        "validate.sh",
        '[ "$(pwd -P)" = "$(cd "$FLEETCORE_RELEASE_DIR" && pwd -P)" ] || exit 1\n'
        '[ "$FLEETCORE_ROLE" = web ] || exit 1\n'
        "test -f validate.sh\n",
    )
    assert validate_record().run(check_ctx("validate", ValidateScriptOptions())) == []


def test_validate_fails_with_exit_code_and_last_lines(check_ctx, write_script):
    write_script("validate.sh", 'echo "checking compose file"\necho "missing: .env" >&2\nexit 2\n')
    findings = validate_record().run(check_ctx("validate", ValidateScriptOptions()))
    assert findings == [
        Finding(
            message="validate.sh failed (exit 2): checking compose file | missing: .env",
            subject="validate.sh",
        )
    ]


def test_validate_without_output_says_so(check_ctx, write_script):
    write_script("validate.sh", "exit 1\n")
    (finding,) = validate_record().run(check_ctx("validate", ValidateScriptOptions()))
    assert finding.message == "validate.sh failed (exit 1) with no output"


def test_validate_past_its_timeout_fails(check_ctx, write_script):
    write_script("validate.sh", "echo waiting for lock\nsleep 30\n")
    began = time.monotonic()
    (finding,) = validate_record().run(
        check_ctx("validate", ValidateScriptOptions(timeout=Duration(0.3)))
    )
    assert time.monotonic() - began < 5
    assert finding == Finding(
        message="validate.sh timed out after 0.3s: waiting for lock", subject="validate.sh"
    )


def test_validate_selected_without_validate_sh_is_a_finding(check_ctx):
    (finding,) = validate_record().run(check_ctx("validate", ValidateScriptOptions()))
    assert finding.subject == "validate.sh"
    assert "validate.sh not found" in finding.message


def test_validate_sh_that_is_not_executable_is_a_finding(check_ctx, write_script):
    write_script("validate.sh", "true\n", executable=False)
    (finding,) = validate_record().run(check_ctx("validate", ValidateScriptOptions()))
    assert finding.message.startswith("validate.sh is not executable")


# -- health-script ---------------------------------------------------------------


def test_health_applies_only_when_the_release_has_health_sh(check_ctx, write_script):
    rec = health_record()
    ctx = check_ctx("health", HealthScriptOptions())
    assert rec.applies is not None
    assert not rec.applies(ctx)
    write_script("health.sh", "true\n")
    assert rec.applies(ctx)


def test_health_passes_when_health_sh_exits_0(check_ctx, write_script, tmp_path):
    marker = tmp_path / "asked"
    write_script("health.sh", f'echo "$FLEETCORE_DEVICE_ID" > {marker}\n')
    assert health_record().run(check_ctx("health", HealthScriptOptions())) == []
    assert marker.read_text().strip() == "pi-kitchen-07"


def test_health_fails_when_health_sh_does_not(check_ctx, write_script):
    write_script("health.sh", "echo 'curl: (7) Failed to connect to localhost port 8080'\nexit 7\n")
    assert health_record().run(check_ctx("health", HealthScriptOptions())) == [
        Finding(
            message="health.sh failed (exit 7): curl: (7) Failed to connect to localhost port 8080",
            subject="health.sh",
        )
    ]


def test_health_killed_by_a_signal_says_so(check_ctx, write_script):
    write_script("health.sh", "kill -9 $$\n")
    (finding,) = health_record().run(check_ctx("health", HealthScriptOptions()))
    assert finding.message == "health.sh failed (killed by signal 9) with no output"


@pytest.mark.parametrize("cls", [ValidateScriptOptions, HealthScriptOptions])
def test_timeout_must_be_a_positive_duration(cls):
    with pytest.raises(ConfigError) as caught:
        structure({"timeout": "soon"}, cls, source="role.toml", root="health.health-script")
    assert caught.value.problems == (
        "expected a duration like '30s', '5m' or '1h', got 'soon' @ health.health-script.timeout",
    )
