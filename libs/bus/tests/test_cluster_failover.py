"""The bus kit on a three-server JetStream cluster when the server it uses dies.

``EmbeddedCluster`` starts three nats-servers as one cluster on loopback ports. A
service-shaped pair (outbox relay and durable consumer on one store) connects with
``AIFACTORY_NATS_URL`` listing all three, provisions replicated streams, and keeps
relaying and applying events while the server it is connected to is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from aifactory.bus import embedded
from aifactory.bus.connection import RECONNECT, Bus
from aifactory.bus.embedded import EmbeddedCluster
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.contracts.example.v1 import WidgetRegistered
from aifactory.store.events import NewEvent
from aifactory.store.store import Store
from aifactory.testing.waiting import wait_until

from .conftest import WIDGETS, applied_counts, apply_widget, running

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """Three clustered nats-servers with JetStream on free loopback ports."""
    with EmbeddedCluster(store_root=tmp_path / "nats") as servers:
        yield servers


@pytest_asyncio.fixture
async def cluster_bus(cluster: EmbeddedCluster, namespace: Namespace) -> AsyncIterator[Bus]:
    """A bus connected through all three servers, with three-replica streams provisioned."""
    settings = BusSettings(nats_url=cluster.url, subject_prefix=namespace.prefix, stream_replicas=3)
    bus = await Bus(settings, service="widgets").connect()
    await bus.provision([WIDGETS])
    yield bus
    with contextlib.suppress(Exception):
        await bus.close()


async def emit_widgets(store: Store, first: int, count: int) -> None:
    """Commit ``count`` widget registrations to the outbox in one transaction."""
    async with store.unit_of_work() as uow:
        for i in range(first, first + count):
            uow.emit(
                NewEvent(
                    WidgetRegistered(widget_id=f"w{i}", tenant="acme", size=i + 1), tenant="acme"
                )
            )


def test_cluster_forms_with_a_meta_leader(cluster: EmbeddedCluster) -> None:
    """The three servers route to each other and agree on one JetStream meta leader."""
    leader = cluster.meta_leader()
    assert leader in {"nats-1", "nats-2", "nats-3"}
    for server in cluster.servers:
        assert server.monitor("jsz")["meta_cluster"]["cluster_size"] == 3
    assert cluster.url.count(",") == 2


def test_cluster_starts_again_when_a_port_was_taken_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A route port another process holds makes that server exit; the cluster starts again on new ports."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = int(taken.getsockname()[1])
        picks = iter([busy])
        real_free_port = embedded.free_port
        monkeypatch.setattr(embedded, "free_port", lambda: next(picks, 0) or real_free_port())
        with EmbeddedCluster(store_root=tmp_path / "nats") as servers:
            assert busy not in {server.cluster_port for server in servers.servers}
            assert servers.meta_leader() in {"nats-1", "nats-2", "nats-3"}
        assert "address already in use" in (tmp_path / "nats" / "nats-1.log").read_text()


async def test_streams_are_replicated_on_three_servers(cluster_bus: Bus) -> None:
    """With stream_replicas=3, provisioning creates streams with a leader and two current replicas."""
    info = await cluster_bus.js.stream_info(cluster_bus.namespace.stream(WIDGETS.stream))
    assert info.config.num_replicas == 3
    assert info.cluster is not None
    assert info.cluster.leader
    assert len(info.cluster.replicas or []) == 2


async def test_relay_and_consumer_carry_on_when_their_server_is_killed(
    cluster: EmbeddedCluster, cluster_bus: Bus, store: Store
) -> None:
    """SIGKILL of the connected server mid-stream: the client reconnects to another, and every outbox event is relayed and applied exactly once."""
    assert RECONNECT["max_reconnect_attempts"] == -1
    relay = cluster_bus.relay(store, ack_timeout_s=3.0)
    consumer = cluster_bus.consumer(WIDGETS, store, handlers={WidgetRegistered: apply_widget})
    relay_task = asyncio.create_task(relay.run())
    try:
        async with running(consumer):
            await emit_widgets(store, 0, 50)
            relay.wake()
            await wait_until(
                lambda: applied_counts(store), lambda c: len(c) >= 20, timeout=60, what="20 widgets"
            )
            connected = cluster_bus.nc.connected_url
            assert connected is not None
            (victim,) = [s for s in cluster.servers if s.port == connected.port]
            victim.kill()
            await emit_widgets(store, 50, 50)
            relay.wake()
            counts = await wait_until(
                lambda: applied_counts(store),
                lambda c: len(c) == 100,
                timeout=90,
                what="100 widgets after the server loss",
            )
            assert not relay_task.done()
    finally:
        relay_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay_task
    assert set(counts.values()) == {1}
    now = cluster_bus.nc.connected_url
    assert now is not None
    assert now.port != victim.port
    info = await cluster_bus.js.stream_info(cluster_bus.namespace.stream(WIDGETS.stream))
    assert info.state.messages == 100
