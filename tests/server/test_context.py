"""Context.change: one transaction, its audit entries, the generation bump
when it recorded anything, and events only after the commit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from fleetcore.plugin.manager import PluginManager
from fleetcore.server import schema as t
from fleetcore.server.bodies import ApiError
from fleetcore.server.context import Context, Everyone
from fleetcore.server.events import EVERY_DEVICE, Event, EventHub
from fleetcore.server.mirror import Mirror
from fleetcore.server.store import Store, database_url


class Recorder(EventHub):
    """Keeps what is published to this server's streams."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Event] = []

    def publish(self, events: Iterable[Event]) -> None:
        self.sent.extend(events)


@pytest.fixture
def hub() -> Recorder:
    return Recorder()


@pytest.fixture
def sent(hub: Recorder) -> list[Event]:
    return hub.sent


@pytest.fixture
def ctx(tmp_path: Path, hub: Recorder) -> Iterator[Context]:
    store = Store(database_url(tmp_path, None))
    mirror = Mirror(tmp_path / "mirror.git", str(tmp_path / "fleet"))
    context = Context(store, mirror, PluginManager(), hub=hub)
    yield context
    store.close()


def _state(ctx: Context) -> tuple[int, list[tuple[str, str, str]]]:
    with ctx.store.connect() as conn:
        rows = conn.execute(sa.select(t.audit.c.actor, t.audit.c.action, t.audit.c.target))
        return ctx.store.generation(conn), [tuple(r) for r in rows]


def test_a_change_commits_its_audit_entries_bumps_once_then_tells(
    ctx: Context, sent: list[Event]
) -> None:
    with ctx.change("alice", tell=Everyone("policy-changed", {"why": "test"})) as ch:
        ctx.store.set_setting(ch.conn, "x", 1)
        ch.audit("one", target="a")
        ch.audit("two", target="b", actor="bob")
        assert sent == []  # not before the commit
    assert _state(ctx) == (1, [("alice", "one", "a"), ("bob", "two", "b")])
    assert [(e.device_id, e.name) for e in sent] == [(EVERY_DEVICE, "policy-changed")]


def test_a_change_that_recorded_nothing_or_asked_not_to_keeps_the_generation(
    ctx: Context,
) -> None:
    with ctx.change("alice"):
        pass
    with ctx.change("alice", bump=False) as ch:
        ch.audit("secrets.read")
    assert _state(ctx) == (0, [("alice", "secrets.read", "")])


def test_a_refused_change_leaves_nothing_and_tells_nobody(ctx: Context, sent: list[Event]) -> None:
    with (
        pytest.raises(ApiError),
        ctx.change("alice", tell=Everyone("policy-changed", {})) as ch,
    ):
        ctx.store.set_setting(ch.conn, "x", 1)
        ch.audit("one")
        raise ApiError(409, "no")
    assert _state(ctx) == (0, [])
    assert sent == []
    with ctx.store.connect() as conn:
        assert ctx.store.get_setting(conn, "x") is None
