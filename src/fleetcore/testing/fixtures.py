"""pytest fixtures for fleetcore and its plugins.

Enable them in a ``conftest.py``::

    pytest_plugins = ["fleetcore.testing.fixtures"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetcore.testing import docker as docker_support
from fleetcore.testing.gitrepo import FleetRepo, GitDaemon
from fleetcore.testing.services import free_port, missing


@pytest.fixture
def fleet_repo(tmp_path: Path) -> FleetRepo:
    """An empty fleet repository (real git) on branch ``main``."""
    return FleetRepo.create(tmp_path / "fleet")


@pytest.fixture(scope="session")
def git_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitDaemon]:
    """A real ``git daemon`` serving repositories under its ``base`` folder.

    Make repos with ``FleetRepo.create(git_daemon.base / "name")`` and reach
    them at ``git_daemon.url(repo)``.
    """
    import shutil

    if shutil.which("git") is None:
        missing("git")
    daemon = GitDaemon(tmp_path_factory.mktemp("git-daemon"), free_port())
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """A running Docker Engine (started here if this process may), and the
    name of an offline-built busybox image in it."""
    if not docker_support.start_engine():
        missing("Docker Engine (dockerd)")
    try:
        return docker_support.ensure_test_image()
    except Exception as exc:  # pragma: no cover - depends on the machine
        missing(f"test image: {exc}")
        raise


@pytest.fixture(params=docker_support.COMPOSE_VERSIONS)
def compose_version(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    """Each test that uses it runs on Compose v1 and on Compose v2: the
    environment makes ``command = "auto"`` find that one (v2 as the
    ``docker compose`` CLI plugin). Returns "v1" or "v2"."""
    version: str = request.param
    try:
        env = docker_support.compose_environment(version, tmp_path_factory.mktemp("compose"))
    except RuntimeError as exc:
        missing(str(exc))
        raise
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return version


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A real PostgreSQL server for the session (initdb + pg_ctl on a loopback
    port, as a non-root user); ``postgres.create_database(name)`` gives a URL."""
    from fleetcore.testing.postgres import Postgres

    try:
        server = Postgres.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        missing(f"PostgreSQL: {exc}")
        raise
    if server is None:
        missing("PostgreSQL (initdb, pg_ctl and a non-root user)")
        raise AssertionError("unreachable")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mqtt_broker() -> Iterator[object]:
    """A real MQTT broker (``mosquitto``) on a free loopback port for the
    session; ``mqtt_broker.url`` is ``mqtt://127.0.0.1:PORT``."""
    from fleetcore.testing.mosquitto import Mosquitto

    try:
        broker = Mosquitto.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        missing(f"mosquitto: {exc}")
        raise
    if broker is None:
        missing("mosquitto (the MQTT broker)")
        raise AssertionError("unreachable")
    yield broker
    broker.stop()


@pytest.fixture
def alertmanager() -> Iterator[object]:
    """A real Prometheus Alertmanager (``prometheus-alertmanager``) on a free
    loopback port, fresh for each test: ``alertmanager.channel_url`` is for
    ``--alerts``, ``alertmanager.wait_for(match)`` finds an active alert."""
    from fleetcore.testing.alertmanager import Alertmanager

    try:
        am = Alertmanager.start()
    except Exception as exc:  # pragma: no cover - depends on the machine
        missing(f"Alertmanager: {exc}")
        raise
    if am is None:
        missing("Alertmanager (prometheus-alertmanager)")
        raise AssertionError("unreachable")
    yield am
    am.stop()


@pytest.fixture
def webhook_receiver() -> Iterator[object]:
    """A real HTTP receiver on a loopback port that records the JSON POSTed
    to ``webhook_receiver.url``; ``fail_next(n)`` and ``hang`` make it fail."""
    from fleetcore.testing.webhook import WebhookReceiver

    receiver = WebhookReceiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def prometheus() -> Iterator[Callable[..., object]]:
    """Start a real Prometheus (Debian's ``prometheus``) on a free loopback
    port: ``prometheus(targets, rules=[...])`` returns a
    :class:`fleetcore.testing.prometheus.Prometheus` scraping ``targets``
    every second; stopped after the test."""
    from fleetcore.testing.prometheus import Prometheus

    started: list[Prometheus] = []

    def start(targets: list[str], rules: list[Path] | None = None) -> Prometheus:
        prom = Prometheus.start(targets, rules or [])
        if prom is None:
            missing("prometheus (Debian package prometheus)")
            raise AssertionError("unreachable")
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()


@pytest.fixture(scope="session")
def haproxy_binary() -> str:
    """The path of a real HAProxy (Debian's ``haproxy``); fails in CI when missing."""
    import shutil

    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if found is None:
        missing("HAProxy (the load balancer)")
        raise AssertionError("unreachable")
    return found
