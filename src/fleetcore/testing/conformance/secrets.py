"""The conformance kit of secrets providers
(:class:`~fleetcore.plugin.types.SecretsProvider`).

Subclass :class:`SecretsProviderKit` and define the fixtures ``record``,
``settings`` (the device's ``[secrets.NAME]`` table in ``agent.toml``),
``role_options`` (the role's table in ``role.toml``) if the defaults do not
do, and two ways of putting the kit's secrets where your provider finds
them: ``provision`` (it must then return them) and ``provision_refused``
(it must then refuse, as when the device may not read them). Both are
called as ``provision(release_dir, device, secrets)`` and return the
``server`` of the :class:`~fleetcore.secrets.interface.SecretsContext`
(None outside managed mode)::

    class TestAgeProvider(SecretsProviderKit):
        @pytest.fixture
        def record(self):
            (record,) = plugin.fleetcore_register_secrets_providers()
            return record

        @pytest.fixture
        def settings(self, identity):
            return {"identity": str(identity)}

        @pytest.fixture
        def provision(self, recipient):
            def provision(release_dir, device, secrets):
                env = "".join(f"{k}={v}\\n" for k, v in secrets.items())
                (release_dir / ".env.age").write_bytes(encrypt(env, recipient))
            return provision

``device`` is a fresh :class:`~fleetcore.plugin.types.DeviceInfo` per test
(its own id and role), ``secrets`` two keys with values made for the test.

It checks that the record is well formed (both options types structure and
refuse unknown keys); that ``provide`` returns a mapping of ``str`` to
``str`` holding the secrets; that no secret value reaches a log record,
stdout or stderr, whether it succeeds or fails; that a refusal is a
:class:`~fleetcore.errors.FleetcoreError` whose message holds no value; and
that files it writes into the release are private (mode 0600).
"""

from __future__ import annotations

import logging
import stat
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from fleetcore.errors import FleetcoreError
from fleetcore.plugin.types import DeviceInfo, SecretsProvider
from fleetcore.secrets.interface import SecretsContext, SecretsProviderImpl
from fleetcore.testing.conformance import COMMIT, expect_error, fail, missing_fixture, tree_state
from fleetcore.testing.contracts import check_summary, structure_options

__all__ = ["Provision", "SecretsProviderKit", "check_secrets_provider_record"]

Provision = Callable[[Path, DeviceInfo, Mapping[str, str]], Any]
"""``provision(release_dir, device, secrets) -> server or None``."""


def check_secrets_provider_record(
    record: SecretsProvider,
    settings: Mapping[str, Any] | Any = None,
    role_options: Mapping[str, Any] | Any = None,
) -> tuple[SecretsProviderImpl, Any]:
    """Check a :class:`~fleetcore.plugin.types.SecretsProvider` record; return
    the provider its factory makes from ``settings`` and the structured
    ``role_options`` (both default to an empty table)."""
    if not isinstance(record, SecretsProvider):
        fail(f"expected a SecretsProvider record, got {record!r}")
    check_summary(record)
    if record.detect is not None and not callable(record.detect):
        fail(f"{record.name}: detect must be callable or None")
    options = structure_options(record, {} if settings is None else settings)
    role = structure_options(
        attrs.evolve(record, config_type=record.role_config_type),
        {} if role_options is None else role_options,
    )
    provider = record.factory(options)
    if not callable(getattr(provider, "provide", None)):
        fail(f"{record.name}: the provider made by factory() has no provide() method")
    return provider, role


def _leaks(values: Mapping[str, str], texts: list[str]) -> list[str]:
    return sorted(k for k, v in values.items() if any(v in text for text in texts))


def _log_texts(records: list[logging.LogRecord]) -> list[str]:
    texts = []
    for record in records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            texts.append(repr(record.exc_info[1]))
        if record.exc_text:
            texts.append(record.exc_text)
    return texts


class SecretsProviderKit:
    """Conformance tests for a secrets provider; see the module's documentation."""

    # -- what a subclass supplies --------------------------------------------------------

    @pytest.fixture
    def record(self) -> SecretsProvider:
        missing_fixture(
            "SecretsProviderKit", "record", "the SecretsProvider record your plugin registers"
        )

    @pytest.fixture
    def settings(self) -> Mapping[str, Any]:
        """The device's ``[secrets.NAME]`` table in ``agent.toml``."""
        return {}

    @pytest.fixture
    def role_options(self) -> Mapping[str, Any]:
        """The role's ``[secrets.NAME]`` table in ``role.toml``."""
        return {}

    @pytest.fixture
    def provision(self) -> Provision:
        missing_fixture(
            "SecretsProviderKit",
            "provision",
            "provision(release_dir, device, secrets): put the secrets where the provider "
            "finds them; returns ctx.server (or None)",
        )

    @pytest.fixture
    def provision_refused(self) -> Provision:
        missing_fixture(
            "SecretsProviderKit",
            "provision_refused",
            "provision_refused(release_dir, device, secrets): a case the provider must "
            "refuse (the device may not read them); returns ctx.server (or None)",
        )

    # -- the kit's own fixtures --------------------------------------------------------

    @pytest.fixture
    def device(self) -> DeviceInfo:
        """A device (and role) of this test alone."""
        tag = uuid.uuid4().hex[:8]
        return DeviceInfo(device_id=f"kit-device-{tag}", role=f"kit-role-{tag}")

    @pytest.fixture
    def secrets(self) -> dict[str, str]:
        tag = uuid.uuid4().hex
        return {"KIT_API_TOKEN": f"kit-token-{tag}", "KIT_DB_PASSWORD": f"kit-pw-{tag[::-1]}"}

    @pytest.fixture
    def provide(
        self,
        record: SecretsProvider,
        settings: Mapping[str, Any],
        role_options: Mapping[str, Any],
        device: DeviceInfo,
        secrets: dict[str, str],
        tmp_path: Path,
    ) -> Callable[[Provision], tuple[SecretsContext, Callable[[], Mapping[str, str]]]]:
        """``provide(provision)``: provision a new release; the context and a
        call of ``provide`` on it."""
        provider, role = check_secrets_provider_record(record, settings, role_options)

        def prepare(
            provision: Provision,
        ) -> tuple[SecretsContext, Callable[[], Mapping[str, str]]]:
            release = tmp_path / "kit-releases" / uuid.uuid4().hex[:8]
            release.mkdir(parents=True)
            server = provision(release, device, secrets)
            ctx = SecretsContext(
                device=device,
                release_dir=release,
                commit=COMMIT,
                state_dir=tmp_path / "kit-state",
                role_options=role,
                server=server,
            )
            return ctx, lambda: provider.provide(ctx)

        return prepare

    # -- the tests ------------------------------------------------------------------------

    def test_record(
        self,
        record: SecretsProvider,
        settings: Mapping[str, Any],
        role_options: Mapping[str, Any],
    ) -> None:
        check_secrets_provider_record(record, settings, role_options)

    def test_provides_the_secrets_as_text(
        self,
        record: SecretsProvider,
        provide: Callable[..., Any],
        provision: Provision,
        secrets: dict[str, str],
    ) -> None:
        _, call = provide(provision)
        values = call()
        if not isinstance(values, Mapping):
            fail(f"{record.name}: provide() must return a mapping, got {type(values).__name__}")
        for key, value in values.items():
            if not isinstance(key, str) or not isinstance(value, str):
                fail(f"{record.name}: provide() must map str to str, got {key!r}: {type(value)}")
        wrong = sorted(k for k, v in secrets.items() if values.get(k) != v)
        if wrong:
            fail(f"{record.name}: provide() did not return the secrets {', '.join(wrong)}")

    def test_values_never_reach_the_logs(
        self,
        record: SecretsProvider,
        provide: Callable[..., Any],
        provision: Provision,
        secrets: dict[str, str],
        caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        caplog.set_level(logging.DEBUG)
        _, call = provide(provision)
        call()
        out, err = capfd.readouterr()
        leaked = _leaks(secrets, [*_log_texts(caplog.records), out, err])
        if leaked:
            fail(f"{record.name}: the values of {', '.join(leaked)} were logged or printed")

    def test_a_refusal_is_an_error_without_the_values(
        self,
        record: SecretsProvider,
        provide: Callable[..., Any],
        provision_refused: Provision,
        secrets: dict[str, str],
        caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str],
    ) -> None:
        caplog.set_level(logging.DEBUG)
        _, call = provide(provision_refused)
        with expect_error(FleetcoreError, record, "provide() that is refused") as refused:
            call()
        message = str(refused.value)
        if not message.strip():
            fail(f"{record.name}: a refusal must say what was refused")
        out, err = capfd.readouterr()
        leaked = _leaks(secrets, [message, *_log_texts(caplog.records), out, err])
        if leaked:
            fail(f"{record.name}: the values of {', '.join(leaked)} are in the error or the logs")

    def test_files_in_the_release_are_private(
        self, record: SecretsProvider, provide: Callable[..., Any], provision: Provision
    ) -> None:
        ctx, call = provide(provision)
        before = tree_state(ctx.release_dir)
        call()
        after = tree_state(ctx.release_dir)
        for rel, entry in after.items():
            if rel in before or entry[0] != "file":
                continue
            mode = stat.S_IMODE((ctx.release_dir / rel).stat().st_mode)
            if mode & 0o077:
                fail(f"{record.name}: {rel} holds secrets and must be mode 0600, is {mode:04o}")
