"""Consumer crash, retry and dead-letter behaviour over a real nats-server and database."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import msgspec
import pytest
from nats.aio.client import Client

from aifactory.bus.connection import Bus
from aifactory.contracts.cloudevents import H_ID, H_TYPE
from aifactory.contracts.dlq import DeadLetter
from aifactory.contracts.envelope import Envelope, build_message
from aifactory.contracts.example.v1 import WidgetRegistered
from aifactory.store.store import Store
from aifactory.store.uow import NewEvent, UnitOfWork
from aifactory.testing.waiting import wait_until

from .conftest import WIDGETS, WidgetRow, applied_counts, apply_widget, running

pytestmark = pytest.mark.integration


class SimulatedCrash(BaseException):
    """The process dies: raised after the commit, before the acknowledgement."""


def _widget(widget_id: str, *, label: str = "", size: int = 1) -> WidgetRegistered:
    return WidgetRegistered(widget_id=widget_id, tenant="acme", size=size, label=label)


async def _publish(bus: Bus, *widgets: WidgetRegistered) -> None:
    for widget in widgets:
        await bus.publisher.publish(NewEvent(widget, tenant=widget.tenant))


async def _publish_raw(bus: Bus, nc: Client, headers: dict[str, str], body: bytes) -> None:
    subject = bus.namespace.subject("factory.example.v1.evt.widget_registered.acme")
    await nc.jetstream().publish(subject, body, headers=headers)


async def _dead_letters(bus: Bus, count: int) -> list[DeadLetter]:
    sub = await bus.js.subscribe(
        bus.namespace.subject("factory.dlq.widgets"), ordered_consumer=True
    )
    records = []
    try:
        for _ in range(count):
            msg = await sub.next_msg(timeout=10)
            records.append(msgspec.json.decode(msg.data, type=DeadLetter))
    finally:
        await sub.unsubscribe()
    return records


async def test_crash_after_commit_before_ack_is_not_applied_twice(bus: Bus, store: Store) -> None:
    """A consumer that dies after its commit but before its ack gets the redelivery and skips it (inbox)."""
    await _publish(bus, _widget("w1"))

    def crash() -> None:
        raise SimulatedCrash

    crashing = bus.consumer(
        WIDGETS, store, handlers={WidgetRegistered: apply_widget}, after_commit=crash
    )
    async with running(crashing) as task:
        await asyncio.wait([task], timeout=10)
    assert task.done()
    assert isinstance(task.exception(), SimulatedCrash)
    assert await applied_counts(store) == {"w1": 1}

    restarted = bus.consumer(WIDGETS, store, handlers={WidgetRegistered: apply_widget})
    async with running(restarted):
        await wait_until(
            lambda: asyncio.sleep(0, restarted.stats.duplicates),
            lambda n: n == 1,
            what="the redelivery to be recognised as a duplicate",
        )
        info = await wait_until(
            lambda: bus.js.consumer_info(bus.namespace.stream(WIDGETS.stream), restarted.name),
            lambda i: i.num_ack_pending == 0,
            what="the redelivery to be acknowledged",
        )
    assert info.num_pending == 0
    assert restarted.stats.redelivered == 1
    assert restarted.stats.applied == 0
    assert await applied_counts(store) == {"w1": 1}


async def test_failing_handler_retried_then_dead_lettered_and_next_processed(
    bus: Bus, store: Store
) -> None:
    """A handler that raises is retried up to max_deliver, then dead-lettered with its reason; the next message is processed."""
    attempts: Counter[str] = Counter()

    async def fragile(envelope: Envelope[WidgetRegistered], uow: UnitOfWork) -> None:
        attempts[envelope.data.widget_id] += 1
        if envelope.data.label == "boom":
            raise ValueError(f"cannot register {envelope.data.widget_id}: label is boom")
        await apply_widget(envelope, uow)

    await _publish(bus, _widget("poison", label="boom"), _widget("good"))
    consumer = bus.consumer(
        WIDGETS, store, handlers={WidgetRegistered: fragile}, backoff_s=(0.05, 0.05)
    )
    async with running(consumer):
        await wait_until(lambda: applied_counts(store), lambda c: "good" in c, what="good widget")
        [record] = await _dead_letters(bus, 1)
    # One failed attempt per delivery (the first delivery may also run inside the
    # batch's transaction before the single-message replay isolates it).
    assert consumer.stats.retried == WIDGETS.max_deliver - 1
    assert consumer.stats.dead_lettered == 1
    assert WIDGETS.max_deliver <= attempts["poison"] <= WIDGETS.max_deliver + 1
    assert record.error_class == "ValueError"
    assert "label is boom" in record.error_message
    assert record.delivery_count == WIDGETS.max_deliver
    assert record.consumer == consumer.name
    assert msgspec.json.decode(record.original_body)["widget_id"] == "poison"
    assert record.original_subject.endswith("widget_registered.acme")
    assert await applied_counts(store) == {"good": 1}


@pytest.mark.parametrize(
    ("case", "mutate", "error_class"),
    [
        ("malformed json", lambda h, b: (h, b[:-5] + b"{{{"), "UndecodableBody"),
        (
            "wrong ce-type",
            lambda h, b: ({**h, H_TYPE: "io.aifactory.example.register_widget.v1"}, b),
            "UnknownMessageType",
        ),
        (
            "missing ce-id",
            lambda h, b: ({k: v for k, v in h.items() if k != H_ID}, b),
            "InvalidCloudEvent",
        ),
        ("unknown field", lambda h, b: (h, b[:-1] + b',"colour":"red"}'), "UndecodableBody"),
        (
            "absurd value",
            lambda h, b: (h, b.replace(b'"size":1', b'"size":1000000000')),
            "UndecodableBody",
        ),
        (
            "oversized body",
            lambda h, b: (h, b[:-1] + b',"label":"' + b"x" * 300_000 + b'"}'),
            "OversizedBody",
        ),
    ],
)
async def test_bad_input_goes_straight_to_dead_letter(
    bus: Bus,
    store: Store,
    nats_client: Client,
    case: str,
    mutate,
    error_class: str,  # type: ignore[no-untyped-def]
) -> None:
    """Malformed bytes, a wrong ce-type, a missing ce-id, unknown fields, absurd values and oversized bodies are dead-lettered at once; the next good message is processed."""
    handled: list[str] = []

    async def recording(envelope: Envelope[WidgetRegistered], uow: UnitOfWork) -> None:
        handled.append(envelope.data.widget_id)
        await apply_widget(envelope, uow)

    bad = build_message(_widget("bad"), source="/test", tenant="acme")
    headers, body = mutate(dict(bad.headers), bad.body)
    await _publish_raw(bus, nats_client, {**headers, "Nats-Msg-Id": f"raw-{case}"}, body)
    await _publish(bus, _widget("next"))

    consumer = bus.consumer(
        WIDGETS, store, handlers={WidgetRegistered: recording}, max_body_bytes=200_000
    )
    async with running(consumer):
        [record] = await _dead_letters(bus, 1)
        await wait_until(lambda: applied_counts(store), lambda c: "next" in c, what="next widget")
    assert record.error_class == error_class, record.error_message
    assert record.delivery_count == 1
    assert record.original_body_size == len(body)
    assert record.original_body == body[: 256 * 1024]
    assert record.original_body_truncated == (len(body) > 256 * 1024)
    assert handled == ["next"]


async def test_batch_handler_applies_each_event_once(bus: Bus, store: Store) -> None:
    """The batch path hands a whole batch to one handler call and skips events already applied."""
    calls: list[int] = []

    async def apply_batch(envelopes: Sequence[Envelope[WidgetRegistered]], uow: UnitOfWork) -> None:
        calls.append(len(envelopes))
        for envelope in envelopes:
            uow.session.add(
                WidgetRow(widget_id=envelope.data.widget_id, size=envelope.data.size, applied=1)
            )

    widgets = [_widget(f"b{i}") for i in range(50)]
    await _publish(bus, *widgets)
    consumer = bus.consumer(
        WIDGETS, store, batch_handler=apply_batch, accept=[WidgetRegistered], batch_size=64
    )
    async with running(consumer):
        counts = await wait_until(
            lambda: applied_counts(store), lambda c: len(c) == 50, what="50 widgets"
        )
    assert set(counts.values()) == {1}
    assert sum(calls) == 50
    assert len(calls) < 50, "the batch path must hand several events per call"


def test_delivery_count_is_read_from_both_ack_subject_forms() -> None:
    """The delivered count comes from the v1 and the v2 (domain, account hash) ack subject."""
    from nats.aio.msg import Msg as NatsMsg

    from aifactory.bus.consumer import delivery_count

    v1 = NatsMsg(_client=None, subject="s", reply="$JS.ACK.STREAM.dur.3.10.7.1700000000000000000.0")  # type: ignore[arg-type]
    v2 = NatsMsg(
        _client=None,
        subject="s",
        reply="$JS.ACK.dom.ACCHASH.STREAM.dur.4.10.7.1700000000000000000.0.tok",
    )  # type: ignore[arg-type]
    assert delivery_count(v1) == 3
    assert delivery_count(v2) == 4
