"""Outbox -> relay -> JetStream -> durable consumer, over a real nats-server and database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlmodel import col

from aifactory.bus.connection import Bus
from aifactory.contracts.cloudevents import parse_headers
from aifactory.contracts.example.v1 import WidgetRegistered
from aifactory.store.events import NewEvent
from aifactory.store.relay import OutboxRelay
from aifactory.store.store import Store
from aifactory.store.tables import OutboxRecord
from aifactory.testing.waiting import wait_until

from .conftest import WIDGETS, applied_counts, apply_widget, running

pytestmark = pytest.mark.integration


class RelayCrashed(Exception):
    """Simulated crash of the relay between publishing and marking."""


class CrashingRelay(OutboxRelay):
    """A relay that publishes its batch, then dies before marking the rows."""

    async def _mark_published(self, session, seqs):  # type: ignore[no-untyped-def]
        raise RelayCrashed


async def _emit_widgets(store: Store, count: int) -> list[str]:
    async with store.unit_of_work() as uow:
        ids = []
        for i in range(count):
            message = uow.emit(
                NewEvent(
                    WidgetRegistered(widget_id=f"w{i}", tenant="acme", size=i + 1), tenant="acme"
                )
            )
            ids.append(message.event.id)
    return ids


async def test_outbox_event_reaches_consumer_with_cloudevents_headers(
    bus: Bus, store: Store
) -> None:
    """An event committed to the outbox is relayed and applied by a durable consumer; its headers are valid CloudEvents."""
    ids = await _emit_widgets(store, 3)
    assert await bus.relay(store).drain() == 3

    stream = bus.namespace.stream(WIDGETS.stream)
    for seq, event_id in enumerate(ids, start=1):
        raw = await bus.js.get_msg(stream, seq)
        event = parse_headers(raw.headers)
        assert event.id == event_id
        assert event.type == "io.aifactory.example.widget_registered.v1"
        assert event.tenant == "acme"
        assert event.trace_id is not None
        assert raw.headers is not None
        assert raw.headers["Nats-Msg-Id"] == event_id
        assert raw.headers["content-type"] == "application/json"
        assert raw.subject == bus.namespace.subject("factory.example.v1.evt.widget_registered.acme")

    consumer = bus.consumer(WIDGETS, store, handlers={WidgetRegistered: apply_widget})
    async with running(consumer):
        counts = await wait_until(
            lambda: applied_counts(store), lambda c: len(c) == 3, what="3 widgets"
        )
    assert counts == {"w0": 1, "w1": 1, "w2": 1}


async def test_relay_crash_between_publish_and_mark_keeps_one_copy(bus: Bus, store: Store) -> None:
    """A relay that crashes after publishing but before marking publishes again; the stream holds each event once."""
    await _emit_widgets(store, 5)
    with pytest.raises(RelayCrashed):
        await CrashingRelay(store, bus.js, qualify=bus.namespace.subject).relay_once()

    async with store.session() as session:
        unmarked = (
            await session.exec(select(func.count()).where(col(OutboxRecord.published_at).is_(None)))  # type: ignore[call-overload]
        ).one()[0]
    assert unmarked == 5, "the crashed relay must leave its rows unmarked"

    assert await bus.relay(store).drain() == 5
    info = await bus.js.stream_info(bus.namespace.stream(WIDGETS.stream))
    assert info.state.messages == 5


async def test_republish_since_resends_without_duplicating(bus: Bus, store: Store) -> None:
    """Re-publishing retained outbox rows (a stream lost them) is deduplicated within the window."""
    await _emit_widgets(store, 2)
    relay = bus.relay(store)
    await relay.drain()
    async with store.session() as session:
        first = (await session.exec(select(func.min(OutboxRecord.created_at)))).one()[0]  # type: ignore[call-overload]
    assert await relay.republish_since(first) == 2
    assert await relay.drain() == 2
    info = await bus.js.stream_info(bus.namespace.stream(WIDGETS.stream))
    assert info.state.messages == 2


async def test_collect_events_fixture_sees_relayed_events(
    bus: Bus, store: Store, collect_events
) -> None:
    """The test plugin's event collector receives what the relay publishes, decodable as contracts."""
    subject = bus.namespace.subject("factory.example.v1.evt.widget_registered.*")
    async with collect_events(bus.nc, subject) as got:
        await _emit_widgets(store, 2)
        await bus.relay(store).drain()
        await got.wait_for(2)
    assert [e.data.widget_id for e in got.envelopes()] == ["w0", "w1"]
