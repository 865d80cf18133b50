from __future__ import annotations

import subprocess
import sys

from fleetcore.config.units import Duration
from fleetcore.plugin.manager import PluginManager
from fleetcore.testing.contracts import (
    check_activator_record,
    check_check_record,
    check_entry_point,
)
from fleetcore_docker import plugin
from fleetcore_docker.activator import ComposeActivator


def test_registered_through_the_entry_point():
    info = check_entry_point(
        "compose",
        {
            "activator": ["compose"],
            "validate check": ["compose-config"],
            "health check": ["containers", "logs", "resources"],
            "resource probe": ["compose"],
        },
    )
    assert info.distribution == "fleetcore-docker"
    pm = PluginManager()
    assert pm.registry("activator").provider("compose") == "compose"
    assert pm.registry("validate check").provider("compose-config") == "compose"
    assert pm.registry("health check").provider("containers") == "compose"


def test_records_keep_the_contract(tmp_path):
    (activator,) = plugin.fleetcore_register_activators()
    assert (activator.name, activator.priority) == ("compose", 100)
    impl = check_activator_record(activator, example={"command": "docker-compose", "pull": True})
    assert isinstance(impl, ComposeActivator)
    assert impl.options.pull
    (validate,) = plugin.fleetcore_register_validate_checks()
    assert validate.name == "compose-config"
    check_check_record(validate, example={"timeout": "30s"})
    health, logs, resources = plugin.fleetcore_register_health_checks()
    assert health.name == "containers"
    options = check_check_record(health, example={"health_timeout": "10s", "observe": "1s"})
    assert options.health_timeout == Duration(10)
    assert (logs.name, logs.default) == ("logs", False)
    logs_options = check_check_record(logs, example={"patterns": ["(?i)oops"], "max_matches": 3})
    assert logs_options.max_matches == 3
    assert (resources.name, resources.default) == ("resources", False)
    limits = check_check_record(resources, example={"max_memory": "200M", "max_cpu_percent": 150})
    assert limits.max_memory.bytes == 200 * 2**20


def test_detect_wants_a_compose_file(tmp_path, helpers):
    (activator,) = plugin.fleetcore_register_activators()
    (validate,) = plugin.fleetcore_register_validate_checks()
    health, *_opt_in = plugin.fleetcore_register_health_checks()
    ctx = helpers.check_ctx("health", tmp_path, None)
    (tmp_path / "activate.sh").write_text("#!/bin/sh\n")
    (tmp_path / "compose.override.yml").write_text("services: {}\n")
    assert not activator.detect(tmp_path)
    assert not validate.applies(ctx) and not health.applies(ctx)
    for name in ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml"):
        (tmp_path / name).write_text("services: {}\n")
        assert activator.detect(tmp_path), name
        assert validate.applies(ctx) and health.applies(ctx)
        (tmp_path / name).unlink()


def test_loading_the_plugin_does_not_import_the_docker_sdk():
    # The agent loads every plugin on each start; roles without compose must
    # not pay for importing the Docker SDK.
    code = (
        "import sys\n"
        "from fleetcore.plugin.manager import PluginManager\n"
        "pm = PluginManager()\n"
        "for kind in ('activator', 'validate check', 'health check'):\n"
        "    list(pm.registry(kind))\n"
        "assert 'compose' in pm.registry('activator')\n"
        "print('docker' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
