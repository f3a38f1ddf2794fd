"""The FastStream broker factory over a real nats-server: msgspec bodies, trace context."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import structlog
from faststream.nats import NatsMessage
from nats.aio.client import Client

from aifactory.bus.broker import make_broker
from aifactory.bus.settings import BusSettings
from aifactory.contracts.cloudevents import H_TRACEPARENT, trace_id_of
from aifactory.contracts.example.v1 import WidgetRegistered

pytestmark = pytest.mark.integration

TRACE = "0af7651916cd43dd8448eb211c80319c"


async def test_broker_decodes_structs_binds_trace_and_propagates_it(
    bus_settings: BusSettings, nats_client: Client, collect_events
) -> None:
    """A make_broker subscriber gets a decoded Struct with the trace bound, and what it publishes carries the same trace."""
    ns = bus_settings.namespace
    broker = make_broker(bus_settings, service="probe")
    seen: dict[str, object] = {}
    done = asyncio.Event()

    @broker.subscriber(ns.subject("probe.in"))
    async def handle(body: WidgetRegistered, msg: NatsMessage) -> None:
        seen["body"] = body
        seen.update(structlog.contextvars.get_contextvars())
        await broker.publish(body, ns.subject("probe.out"), headers={})
        done.set()

    async with collect_events(nats_client, ns.subject("probe.out")) as out:
        await broker.start()
        await broker.connection.flush()  # the server has our subscription before we publish
        try:
            widget = WidgetRegistered(widget_id="w1", tenant="acme", size=2)
            await nats_client.publish(
                ns.subject("probe.in"),
                msgspec.json.encode(widget),
                headers={
                    "traceparent": f"00-{TRACE}-b7ad6b7169203331-01",
                    "ce-tenant": "acme",
                    "content-type": "application/json",
                },
            )
            await asyncio.wait_for(done.wait(), 10)
            [published] = await out.wait_for(1)
        finally:
            await broker.stop()
    assert seen["body"] == widget
    assert seen["trace_id"] == TRACE
    assert seen["tenant"] == "acme"
    assert published.headers is not None
    assert trace_id_of(published.headers[H_TRACEPARENT]) == TRACE
