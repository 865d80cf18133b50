"""The logs and resources health checks against the real Docker Engine."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from fleetcore.config.units import Duration, Size
from fleetcore.errors import ConfigError
from fleetcore.plugin.manager import PluginManager
from fleetcore.plugin.options import structure
from fleetcore_docker.activator import ComposeActivator
from fleetcore_docker.options import ComposeOptions, LogsOptions, ResourcesOptions
from fleetcore_docker.usage import logs, resources

pytestmark = pytest.mark.docker

FAST = ComposeOptions(timeout=Duration(60), stop_timeout=Duration(1))


def _noisy(lines: list[str]) -> list[str]:
    script = "; ".join(f"echo '{line}'" for line in lines)
    return ["sh", "-c", f"{script}; exec sleep 600"]


def test_logs_counts_error_lines_since_activation(docker_engine, project, make_release, helpers):
    release = make_release(
        "v1",
        {
            "db": helpers.service(
                docker_engine,
                _noisy(["starting", "ERROR: cannot open s3cr3t-pass.db", "Fatal: giving up"]),
            ),
            "web": helpers.service(docker_engine, _noisy(["listening on 8080"])),
        },
    )
    activated = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    ComposeActivator(FAST).start(helpers.activation_ctx(release, project))
    time.sleep(1)  # the echo has run

    def run(options, **changes):
        ctx = helpers.check_ctx(
            "health", release, options, project=project, activated_at=activated, **changes
        )
        return list(logs(ctx))

    (finding,) = run(LogsOptions())
    assert finding.subject == "service db"
    assert finding.code == "container-log-errors"
    assert (finding.expected, finding.found) == ("at most 0 error lines", "2 error lines")
    assert 'first: "ERROR: cannot open s3cr3t-pass.db"' in finding.message
    # A secret of the release quoted in a log line stays out of the finding.
    env = {**helpers.fleetcore_env(release), "DB_PASSWORD": "s3cr3t-pass"}
    (masked,) = run(LogsOptions(), env=env)
    assert "s3cr3t" not in masked.message and "***.db" in masked.message
    # Up to max_matches lines pass; patterns are the role's.
    assert run(LogsOptions(max_matches=2)) == []
    (custom,) = run(LogsOptions(patterns=("listening",)))
    assert custom.subject == "service web"
    assert run(LogsOptions(services=("web",))) == []
    # Lines logged before the activation are not this release's.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    ctx = helpers.check_ctx("health", release, LogsOptions(), project=project, activated_at=later)
    assert list(logs(ctx)) == []


def test_resources_flags_restarts_memory_and_cpu(docker_engine, project, make_release, helpers):
    release = make_release(
        "v1",
        {
            # Crashes at once, restarted by the engine.
            "loop": helpers.service(
                docker_engine, ["sh", "-c", "sleep 0.3; exit 1"], restart="always"
            ),
            # Holds 40 MiB in /dev/shm, charged to its memory limit of 64 MiB.
            "hog": helpers.service(
                docker_engine,
                ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=40; exec sleep 600"],
                mem_limit="64m",
            ),
            # Spins one CPU.
            "spin": helpers.service(docker_engine, ["sh", "-c", "while :; do :; done"]),
            "calm": helpers.service(docker_engine, ["sleep", "600"]),
        },
    )
    ComposeActivator(FAST).start(helpers.activation_ctx(release, project))
    time.sleep(2.5)  # a few restarts, the memory filled

    options = ResourcesOptions(
        max_restarts=0, max_memory_percent=50, max_memory=Size.parse("30M"), max_cpu_percent=10
    )
    findings = list(resources(helpers.check_ctx("health", release, options, project=project)))
    by = {(f.subject, f.code) for f in findings}
    assert ("service loop", "container-restarted") in by, findings
    assert ("service hog", "container-memory-high") in by, findings
    assert ("service spin", "container-cpu-high") in by, findings
    assert not any(f.subject == "service calm" for f in findings), findings
    hog = [f for f in findings if f.subject == "service hog"]
    assert {f.expected for f in hog} == {"at most 30M", "at most 50% of the limit"}
    # Within generous limits, nothing is wrong.
    lenient = ResourcesOptions(max_restarts=1000, max_cpu_percent=1000, services=("hog", "calm"))
    assert list(resources(helpers.check_ctx("health", release, lenient, project=project))) == []


def test_both_are_opt_in_health_checks() -> None:
    pm = PluginManager()
    registry = pm.registry("health check")
    for name in ("logs", "resources"):
        check = registry.get(name, where=f"health.{name}", source="test")
        assert check.default is False


def test_bad_options_are_errors_naming_the_key() -> None:
    for table, key in (
        ({"patterns": ["(unclosed"]}, "patterns"),
        ({"max_matches": -1}, "max_matches"),
    ):
        with pytest.raises(ConfigError) as exc:
            structure(table, LogsOptions, source="roles/web/role.toml", root="health.logs")
        assert exc.value.problems[0].endswith(f"@ health.logs.{key}"), exc.value.problems
    with pytest.raises(ConfigError) as exc:
        structure({"max_cpu_percent": 0}, ResourcesOptions, source="r", root="health.resources")
    assert exc.value.problems[0].endswith("@ health.resources.max_cpu_percent")


def test_the_probe_measures_the_projects_containers(docker_engine, project, make_release, helpers):
    from fleetcore_docker.usage import ContainerProbe

    release = make_release(
        "v1",
        {
            "spin": helpers.service(docker_engine, ["sh", "-c", "while :; do :; done"]),
            "calm": helpers.service(docker_engine, ["sleep", "600"], mem_limit="64m"),
        },
    )
    ComposeActivator(FAST).start(helpers.activation_ctx(release, project))
    probe = ContainerProbe()
    first = probe.containers(helpers.DEVICE, project)
    assert len(first) == 2 and all(
        u.cpu_percent is None for u in first
    )  # a rate needs two readings
    time.sleep(1.5)
    usage = {u.name: u for u in probe.containers(helpers.DEVICE, project)}
    assert len(usage) == 2
    spin = next(u for n, u in usage.items() if "spin" in n)
    calm = next(u for n, u in usage.items() if "calm" in n)
    assert spin.cpu_percent is not None and spin.cpu_percent > 20, spin
    assert calm.cpu_percent is not None and calm.cpu_percent < spin.cpu_percent
    assert calm.memory_limit_bytes == 64 * 2**20
    assert calm.memory_bytes is not None and 0 < calm.memory_bytes < 64 * 2**20
    assert spin.memory_limit_bytes is None and spin.restarts == 0
    # Another project's containers are not this device's.
    assert probe.containers(helpers.DEVICE, project + "-other") == []


def test_the_probe_is_registered() -> None:
    pm = PluginManager()
    assert "compose" in pm.registry("resource probe")
