"""Provisioning the factory's JetStream topology against a real nats-server."""

from __future__ import annotations

import dataclasses

import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from aifactory.bus.settings import BusSettings
from aifactory.bus.topology import (
    ConsumerSpec,
    StreamSpec,
    Topology,
    factory_topology,
    provision,
)
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


class _FormingClusterJetStream:
    """A JetStream API that is unavailable for its first ``unavailable`` calls, like a forming cluster."""

    def __init__(self, unavailable: int, error: Exception) -> None:
        self.unavailable = unavailable
        self.error = error
        self.calls: list[str] = []

    def _maybe_fail(self, call: str) -> None:
        self.calls.append(call)
        if self.unavailable > 0:
            self.unavailable -= 1
            raise self.error

    async def stream_info(self, name: str) -> object:
        self._maybe_fail("stream_info")
        raise NotFoundError

    async def add_stream(self, config: object) -> object:
        self._maybe_fail("add_stream")
        return config


@pytest.mark.parametrize(
    "error",
    [
        ServiceUnavailableError(code=503, err_code=10008, description="temporarily unavailable"),
        APIError(code=500, err_code=10023, description="insufficient resources"),
        NatsTimeoutError(),
    ],
    ids=["unavailable", "insufficient-resources", "timeout"],
)
async def test_provision_retries_while_the_cluster_cannot_serve_yet(error: Exception) -> None:
    """Unavailable / insufficient resources / timeouts from a forming cluster are retried until the stream is created."""
    js = _FormingClusterJetStream(unavailable=2, error=error)
    topology = Topology(streams=(StreamSpec(name="FACTORY_X", subjects=("factory.x.>",)),))
    report = await provision(js, topology)  # type: ignore[arg-type]
    assert report.created_streams == ("FACTORY_X",)
    assert js.calls == ["stream_info", "stream_info", "stream_info", "add_stream"]


async def test_provision_gives_up_on_a_lasting_failure_with_the_error() -> None:
    """A cluster that stays unavailable past retry_for_s fails the provisioning with JetStream's error."""
    js = _FormingClusterJetStream(unavailable=1000, error=ServiceUnavailableError(code=503))
    topology = Topology(streams=(StreamSpec(name="FACTORY_X", subjects=("factory.x.>",)),))
    with pytest.raises(ServiceUnavailableError):
        await provision(js, topology, retry_for_s=1.0)  # type: ignore[arg-type]
    assert 2 <= len(js.calls) <= 4


@pytest.mark.parametrize(
    "refusal",
    [
        APIError(code=400, err_code=10065, description="subjects overlap"),
        ServiceUnavailableError(),  # no responders: JetStream is not enabled on the server
    ],
    ids=["subjects-overlap", "no-jetstream"],
)
async def test_provision_does_not_retry_a_lasting_refusal(refusal: Exception) -> None:
    """An error that waiting will not fix (overlapping subjects, no JetStream at all) is raised at once."""
    js = _FormingClusterJetStream(unavailable=1, error=refusal)
    topology = Topology(streams=(StreamSpec(name="FACTORY_X", subjects=("factory.x.>",)),))
    with pytest.raises(type(refusal)):
        await provision(js, topology)  # type: ignore[arg-type]
    assert js.calls == ["stream_info"]
