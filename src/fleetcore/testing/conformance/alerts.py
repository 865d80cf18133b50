"""The conformance kit of alert channels (:class:`~fleetcore.plugin.types.AlertChannel`).

Subclass :class:`AlertChannelKit` and define the fixtures ``record``,
``options`` (the channel's options, reaching a real receiver of its kind)
and ``arrived``: a callable that says whether the receiver holds an alert
(by its name and its ``kit`` label, which the kit makes unique per test).
``unreachable_options`` (the same channel with nothing at the other end)
checks that ``send`` raises, promptly, when it could not deliver::

    class TestNtfyChannel(AlertChannelKit):
        @pytest.fixture
        def record(self):
            (record,) = plugin.fleetcore_register_alert_channels()
            return record

        @pytest.fixture
        def options(self, ntfy_server):
            return {"url": ntfy_server.url}

        @pytest.fixture
        def arrived(self, ntfy_server):
            return lambda alert: any(
                m["title"] == alert.name and alert.labels["kit"] in m["message"]
                for m in ntfy_server.messages()
            )

        @pytest.fixture
        def unreachable_options(self, closed_port):
            return {"url": f"ntfy://127.0.0.1:{closed_port}"}

The kit checks that an alert and a batch of alerts arrive, that a resolved
alert is accepted, that ``send`` raises (within :attr:`prompt` seconds) when
the receiver is down, so that the server can retry, and that ``close``
returns promptly and leaves no thread behind.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import pytest

from fleetcore.alerts.interface import Alert, AlertChannel, AlertSender
from fleetcore.testing.conformance import COMMIT, DEVICE, fail, missing_fixture
from fleetcore.testing.contracts import check_summary, structure_options

__all__ = ["AlertChannelKit", "check_alert_channel_record", "kit_alert"]

_serial = itertools.count(1)


def kit_alert(name: str = "kit-alert", severity: str = "critical", **labels: str) -> Alert:
    """An alert as the server raises them, with a ``kit`` label unique to it."""
    return Alert(
        name=name,
        severity=severity,
        summary=f"{name}: raised by the conformance kit",
        labels={
            "kit": f"kit-{time.time_ns()}-{next(_serial)}",
            "role": DEVICE.role,
            "commit": COMMIT,
            "device": DEVICE.device_id,
            **labels,
        },
        detail={"reason": "conformance kit"},
        at=time.time(),
    )


def check_alert_channel_record(record: AlertChannel, options: Mapping[str, Any] | Any) -> Any:
    """Check an :class:`~fleetcore.plugin.types.AlertChannel` record; return
    its options structured from ``options``."""
    if not isinstance(record, AlertChannel):
        fail(f"expected an AlertChannel record, got {record!r}")
    check_summary(record)
    for scheme in record.schemes:
        if (
            not scheme
            or not all(c.isalnum() or c in "+-." for c in scheme)
            or scheme != scheme.lower()
        ):
            fail(f"{record.name}: schemes are lower-case URL schemes like 'https', got {scheme!r}")
    if not callable(record.sender):
        fail(f"{record.name}: sender must be callable")
    return structure_options(record, options)


class AlertChannelKit:
    """Conformance tests for an alert channel; see the module's documentation."""

    timeout: ClassVar[float] = 30.0
    """How long the kit waits for an alert to show at the receiver."""
    prompt: ClassVar[float] = 15.0
    """How long making a sender, a failing ``send`` or ``close`` may take."""

    # -- what a subclass supplies --------------------------------------------------------

    @pytest.fixture
    def record(self) -> AlertChannel:
        missing_fixture(
            "AlertChannelKit", "record", "the AlertChannel record your plugin registers"
        )

    @pytest.fixture
    def options(self) -> Mapping[str, Any]:
        missing_fixture(
            "AlertChannelKit", "options", "the channel's options, reaching a real receiver"
        )

    @pytest.fixture
    def arrived(self) -> Callable[[Alert], bool]:
        missing_fixture(
            "AlertChannelKit", "arrived", "whether the receiver holds an alert (name, kit label)"
        )

    @pytest.fixture
    def unreachable_options(self) -> Mapping[str, Any] | None:
        """Options of the channel with nothing at the other end (None: no such case)."""
        return None

    # -- helpers -------------------------------------------------------------------------

    def _sender(self, record: AlertChannel, options: Any) -> AlertSender:
        started = time.monotonic()
        sender = record.sender(options)
        if time.monotonic() - started > self.prompt:
            fail(f"{record.name}: making the sender took more than {self.prompt:g}s")
        for method in ("send", "close"):
            if not callable(getattr(sender, method, None)):
                fail(f"{record.name}: the sender has no {method}() method")
        return sender

    def _until(self, record: AlertChannel, arrived: Callable[[Alert], bool], alert: Alert) -> None:
        deadline = time.monotonic() + self.timeout
        while not arrived(alert):
            if time.monotonic() > deadline:
                fail(f"{record.name}: alert {alert.name} ({alert.labels['kit']}) never arrived")
            time.sleep(0.2)

    # -- the tests ------------------------------------------------------------------------

    def test_record(self, record: AlertChannel, options: Mapping[str, Any]) -> None:
        check_alert_channel_record(record, options)

    def test_an_alert_arrives(
        self, record: AlertChannel, options: Mapping[str, Any], arrived: Callable[[Alert], bool]
    ) -> None:
        sender = self._sender(record, check_alert_channel_record(record, options))
        try:
            alert = kit_alert()
            sender.send([alert])
            self._until(record, arrived, alert)
        finally:
            sender.close()

    def test_every_alert_of_a_batch_arrives(
        self, record: AlertChannel, options: Mapping[str, Any], arrived: Callable[[Alert], bool]
    ) -> None:
        sender = self._sender(record, check_alert_channel_record(record, options))
        try:
            batch = [
                kit_alert("kit-device-safe-mode"),
                kit_alert("kit-rollout-halted", "warning", rollout="7"),
                kit_alert("kit-device-offline", "warning"),
            ]
            sender.send(batch)
            for alert in batch:
                self._until(record, arrived, alert)
        finally:
            sender.close()

    def test_a_resolved_alert_is_accepted(
        self, record: AlertChannel, options: Mapping[str, Any]
    ) -> None:
        import attrs

        sender = self._sender(record, check_alert_channel_record(record, options))
        try:
            firing = kit_alert()
            sender.send([firing])
            sender.send([attrs.evolve(firing, resolved=True, at=firing.at + 1)])
        finally:
            sender.close()

    def test_send_raises_promptly_when_the_receiver_is_down(
        self, record: AlertChannel, unreachable_options: Mapping[str, Any] | None
    ) -> None:
        if unreachable_options is None:
            pytest.skip(f"{record.name}: no unreachable_options given")
        sender = self._sender(record, check_alert_channel_record(record, unreachable_options))
        started = time.monotonic()
        raised = False
        try:
            sender.send([kit_alert()])
        except Exception:
            raised = True  # what the server needs: it retries the batch later
        finally:
            sender.close()
        if not raised:
            fail(f"{record.name}: send() returned with nobody there; raise so it is retried")
        took = time.monotonic() - started
        if took > self.prompt:
            fail(f"{record.name}: send() took {took:.1f}s to give up")

    def test_close_is_clean(self, record: AlertChannel, options: Mapping[str, Any]) -> None:
        before = set(threading.enumerate())
        sender = self._sender(record, check_alert_channel_record(record, options))
        sender.send([kit_alert()])
        started = time.monotonic()
        sender.close()
        if time.monotonic() - started > self.prompt:
            fail(f"{record.name}: close() took more than {self.prompt:g}s")
        deadline = time.monotonic() + self.prompt
        while (left := set(threading.enumerate()) - before) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            names = ", ".join(sorted(t.name for t in left))
            fail(f"{record.name}: threads left running after close(): {names}")
