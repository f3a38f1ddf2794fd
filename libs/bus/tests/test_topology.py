"""Provisioning the factory's JetStream topology against a real nats-server."""

from __future__ import annotations

import dataclasses

from nats.aio.client import Client

from aifactory.bus.settings import BusSettings
from aifactory.bus.topology import ConsumerSpec, factory_topology, provision
from aifactory.contracts.catalog import load_all

load_all()


async def test_provision_creates_streams_then_is_idempotent(
    nats_client: Client, bus_settings: BusSettings
) -> None:
    """A first provision creates every stream; a second one changes nothing."""
    js = nats_client.jetstream()
    topology = factory_topology(bus_settings)
    first = await provision(js, topology, bus_settings.namespace)
    assert set(first.created_streams) == {
        bus_settings.namespace.stream(s.name) for s in topology.streams
    }
    second = await provision(js, topology, bus_settings.namespace)
    assert second.created_streams == ()
    assert second.updated_streams == ()


async def test_provision_applies_changed_consumer_settings(
    nats_client: Client, bus_settings: BusSettings
) -> None:
    """Re-provisioning with a new max_deliver updates the existing durable consumer."""
    js = nats_client.jetstream()
    ns = bus_settings.namespace
    consumer = ConsumerSpec(
        stream="FACTORY_EXAMPLE",
        durable="widgets",
        filter_subjects=("factory.example.>",),
        max_deliver=3,
    )
    await provision(js, factory_topology(bus_settings, [consumer]), ns)
    changed = dataclasses.replace(consumer, max_deliver=7, ack_wait_s=12)
    await provision(js, factory_topology(bus_settings, [changed]), ns)
    info = await js.consumer_info(ns.stream("FACTORY_EXAMPLE"), ns.stream("widgets"))
    assert info.config.max_deliver == 7
    assert info.config.ack_wait == 12
