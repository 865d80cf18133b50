"""What each channel sends, as a receiver sees it, and how the server's
alert pump delivers through them when the receiver fails or hangs."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest

from fleetcore.errors import ConfigError
from fleetcore.plugin import Alert
from fleetcore.plugin.options import structure
from fleetcore.server.alerts import AlertPump
from fleetcore_alerts.alertmanager import AlertmanagerSender, label_name
from fleetcore_alerts.options import AlertmanagerOptions, WebhookOptions
from fleetcore_alerts.webhook import WebhookSender

COMMIT = "3f2a9c1b7e4d" * 3 + "abcd"


def alert(name: str = "rollout-halted", **more: Any) -> Alert:
    labels = {"role": "camera", "commit": COMMIT, "rollout": "4", **more.pop("labels", {})}
    return Alert(
        name=name,
        severity=more.pop("severity", "critical"),
        summary=f"{name} for the test",
        labels=labels,
        detail={"reason": "3 of 10 failed", "step": 1},
        at=more.pop("at", time.time()),
        **more,
    )


def webhook(url: str, **more: Any) -> WebhookSender:
    return WebhookSender(
        structure({"url": url, **more}, WebhookOptions, source="--alerts", root="webhook")
    )


def alertmanager(url: str, **more: Any) -> AlertmanagerSender:
    opts = structure({"url": url, **more}, AlertmanagerOptions, source="--alerts", root="am")
    return AlertmanagerSender(opts)


# -- webhook -------------------------------------------------------------------------------


def test_webhook_posts_each_batch_as_one_json_document(webhook_receiver: Any) -> None:
    sender = webhook(webhook_receiver.url)
    sender.send([alert(), alert("device-safe-mode", labels={"device": "cam-7"})])
    (body,) = webhook_receiver.bodies
    assert body["source"] == "fleetcore" and body["version"] == 1
    first, second = body["alerts"]
    assert first["name"] == "rollout-halted" and first["severity"] == "critical"
    assert first["labels"] == {"role": "camera", "commit": COMMIT, "rollout": "4"}
    assert first["detail"] == {"reason": "3 of 10 failed", "step": 1}
    assert first["at"].endswith("+00:00") and first["resolved"] is False
    assert second["labels"]["device"] == "cam-7"


def test_webhook_sends_the_bearer_token_from_its_file(
    webhook_receiver: Any, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    webhook(webhook_receiver.url, token_file=str(token)).send([alert()])
    assert webhook_receiver.headers[0]["Authorization"] == "Bearer s3cret-token"


def test_webhook_raises_on_an_error_answer_so_the_server_retries(webhook_receiver: Any) -> None:
    webhook_receiver.fail_next(1)
    with pytest.raises(Exception, match="503"):
        webhook(webhook_receiver.url).send([alert()])
    webhook(webhook_receiver.url).send([alert()])
    assert len(webhook_receiver.bodies) == 1


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"url": "ftp://host/x"}, "url must look like http(s)://HOST[:PORT]/PATH @ webhook.url"),
        ({"url": "https://host/x", "timeout": "0s"}, "timeout must be between 1s and 5m"),
        (
            {"url": "https://host/x", "token_file": "/nonexistent/t"},
            "is not a file @ webhook.token_file",
        ),
        ({"url": "https://host/x", "tokn_file": "x"}, "tokn_file"),
    ],
)
def test_bad_webhook_options_are_named(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        structure(options, WebhookOptions, source="--alerts", root="webhook")
    assert problem in "\n".join(caught.value.problems)


# -- alertmanager --------------------------------------------------------------------------


def test_alertmanager_holds_the_alert_with_its_labels(alertmanager: Any) -> None:
    sender = alertmanager_sender = alertmanager_sender_for(alertmanager)
    sender.send([alert(labels={"device": "", "odd-key": "x"})])
    found = alertmanager.wait_for(lambda a: a["labels"]["alertname"] == "rollout-halted")
    assert found is not None
    assert found["labels"] == {
        "alertname": "rollout-halted",
        "severity": "critical",
        "role": "camera",
        "commit": COMMIT,
        "rollout": "4",
        "odd_key": "x",
    }
    assert found["annotations"]["summary"] == "rollout-halted for the test"
    assert "reason=3 of 10 failed" in found["annotations"]["description"]
    alertmanager_sender.close()


def test_a_resolved_alert_ends_the_firing_one(alertmanager: Any) -> None:
    sender = alertmanager_sender_for(alertmanager)
    firing = alert("device-safe-mode", labels={"device": "cam-1"})
    sender.send([firing])
    assert alertmanager.wait_for(lambda a: a["labels"]["alertname"] == "device-safe-mode")
    sender.send([attrs.evolve(firing, resolved=True, at=firing.at + 5)])
    deadline = time.monotonic() + 30
    while any(a["labels"]["alertname"] == "device-safe-mode" for a in alertmanager.alerts()):
        assert time.monotonic() < deadline, "the resolved alert is still active"
        time.sleep(0.2)


def test_alertmanager_urls_select_http_or_https() -> None:
    def base(url: str) -> str:
        opts = structure({"url": url}, AlertmanagerOptions, source="--alerts", root="am")
        return opts.base_url

    assert base("alertmanager://am.example:9093") == "http://am.example:9093"
    assert base("alertmanager+https://am.example/prefix/") == "https://am.example/prefix"
    assert label_name("9lives") == "_9lives" and label_name("a.b-c") == "a_b_c"


def alertmanager_sender_for(am: Any) -> AlertmanagerSender:
    return alertmanager(am.channel_url)


# -- the server's pump, through a real channel ---------------------------------------------


def test_the_pump_retries_until_the_receiver_takes_the_alert(webhook_receiver: Any) -> None:
    webhook_receiver.fail_next(2)
    pump = AlertPump("hook", webhook(webhook_receiver.url), first_retry=0.2)
    try:
        pump.submit(alert())
        body = webhook_receiver.wait_for(lambda b: True, timeout=30)
        assert body is not None and body["alerts"][0]["name"] == "rollout-halted"
        assert webhook_receiver.requests == 3  # two 503s, then delivered
        deadline = time.monotonic() + 10  # the answer reaches the pump after the body
        while pump.sent != 1:
            assert time.monotonic() < deadline, "the pump did not count the delivery"
            time.sleep(0.05)
        assert pump.dropped == 0
    finally:
        pump.close()


def test_the_pump_gives_up_on_a_batch_after_its_time(webhook_receiver: Any) -> None:
    webhook_receiver.fail_next(1000)
    pump = AlertPump("hook", webhook(webhook_receiver.url), first_retry=0.1, give_up_after=1.0)
    try:
        pump.submit(alert())
        deadline = time.monotonic() + 30
        while pump.dropped == 0:
            assert time.monotonic() < deadline, "the batch was never given up"
            time.sleep(0.05)
        assert webhook_receiver.requests >= 3 and pump.sent == 0
    finally:
        pump.close()


def test_a_hanging_receiver_never_blocks_whoever_raises_alerts(webhook_receiver: Any) -> None:
    webhook_receiver.hang = 60.0
    pump = AlertPump("hook", webhook(webhook_receiver.url, timeout="30s"))
    try:
        started = time.monotonic()
        for i in range(50):
            pump.submit(alert(labels={"rollout": str(i)}))
        assert time.monotonic() - started < 1.0
        deadline = time.monotonic() + 30
        while webhook_receiver.requests == 0:  # the pump's thread is the one waiting
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert pump.sent == 0
    finally:
        webhook_receiver.hang = 0.0
        closing = threading.Thread(target=pump.close, kwargs={"timeout": 2.0})
        closing.start()
        closing.join(10)
        assert not closing.is_alive(), "close() hung on a hanging receiver"
