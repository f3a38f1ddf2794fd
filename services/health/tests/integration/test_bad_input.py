"""Bad input over real NATS: typed refusals, counted drops, dead letters; the service keeps running."""

from __future__ import annotations

import msgspec
import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, request
from aifactory.bus.settings import Namespace
from aifactory.contracts.health.v1 import (
    LiftSilence,
    ListNodeHealth,
    NodeHealthPage,
    NodeTelemetry,
    SilenceNode,
    SilenceView,
)
from aifactory.contracts.inventory.v1 import NodeRegistered
from aifactory.contracts.registry import spec_of
from aifactory.testing.waiting import wait_until

from .conftest import HealthFactory, node_record

pytestmark = pytest.mark.integration


async def _page(nc: Client, ns: Namespace) -> NodeHealthPage:
    return await request(nc, ListNodeHealth(), NodeHealthPage, namespace=ns)


async def test_garbage_and_unknown_telemetry_are_counted_not_fatal(
    start_health: HealthFactory, register_nodes, nats_client: Client, namespace: Namespace
) -> None:
    """Garbage telemetry and telemetry from unknown nodes are dropped and counted; good telemetry still applies."""
    service = await start_health()
    await register_nodes(node_record("gpu-a001"))
    await wait_until(lambda: _page(nats_client, namespace), lambda p: p.total == 1, what="node")
    subject = namespace.subject(spec_of(NodeTelemetry).subject())
    good = {
        "node_id": "gpu-a001",
        "session": "s1",
        "seq": 1,
        "sent_at": "2026-11-26T09:30:00Z",
        "interval_ms": 1000,
        "source": "simulated",
    }
    for body in (b"\x00\xffgarbage", b"{}", msgspec.json.encode({**good, "seq": -1})):
        await nats_client.publish(subject, body)
    for _ in range(3):
        await nats_client.publish(subject, msgspec.json.encode({**good, "node_id": "gpu-ghost"}))
    await nats_client.publish(subject, msgspec.json.encode(good))
    page = await wait_until(
        lambda: _page(nats_client, namespace), lambda p: p.ingest.received >= 7, what="ingest"
    )
    assert (page.ingest.garbage, page.ingest.unknown_node, page.ingest.applied) == (3, 3, 1)
    assert page.ingest.unknown_node_ids == ["gpu-ghost"]
    assert page.nodes[0].last_heartbeat_at is not None
    assert service.engine.ticks > 0


async def test_commands_refuse_bad_requests_with_typed_errors(
    start_health: HealthFactory, register_nodes, nats_client: Client, namespace: Namespace
) -> None:
    """Unknown nodes and silences are not_found, a tenant is unauthorized, a malformed body is invalid_request."""
    await start_health()
    await register_nodes(node_record("gpu-a001"))
    await wait_until(lambda: _page(nats_client, namespace), lambda p: p.total == 1, what="node")
    with pytest.raises(CommandFailed) as unknown:
        await request(
            nats_client,
            SilenceNode(node_id="gpu-nope", duration_s=60, reason="x", actor="t"),
            SilenceView,
            namespace=namespace,
        )
    assert unknown.value.error.code == "not_found"
    with pytest.raises(CommandFailed) as tenant:
        await request(
            nats_client,
            SilenceNode(node_id="gpu-a001", duration_s=60, reason="x", actor="t"),
            SilenceView,
            namespace=namespace,
            tenant="acme",
        )
    assert tenant.value.error.code == "unauthorized"
    with pytest.raises(CommandFailed) as missing:
        await request(
            nats_client, LiftSilence(silence_id="nope", actor="t"), SilenceView, namespace=namespace
        )
    assert missing.value.error.code == "not_found"
    subject = namespace.subject(spec_of(SilenceNode).subject())
    reply = await nats_client.request(
        subject, b'{"node_id": "gpu-a001", "duration_s": 99999999}', timeout=5
    )
    assert (reply.headers or {}).get("ce-type") == "io.aifactory.error.v1"
    assert msgspec.json.decode(reply.data)["code"] == "invalid_request"
    silenced = await request(
        nats_client,
        SilenceNode(node_id="gpu-a001", duration_s=60, reason="cable swap", actor="t"),
        SilenceView,
        namespace=namespace,
    )
    lifted = await request(
        nats_client,
        LiftSilence(silence_id=silenced.silence_id, actor="t"),
        SilenceView,
        namespace=namespace,
    )
    assert lifted.lifted


async def test_undecodable_inventory_event_is_dead_lettered(
    start_health: HealthFactory, nats_client: Client, namespace: Namespace, register_nodes
) -> None:
    """A NodeRegistered event with a body that does not decode goes to the dead-letter stream; later events still apply."""
    service = await start_health()
    spec = spec_of(NodeRegistered)
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "bad-1",
        "ce-source": "/test",
        "ce-type": spec.ce_type,
        "content-type": "application/json",
        "Nats-Msg-Id": "bad-1",
    }
    js = nats_client.jetstream()
    await js.publish(namespace.subject(spec.subject("fra1")), b'{"node": 1}', headers=headers)
    await register_nodes(node_record("gpu-a009"))
    await wait_until(lambda: _page(nats_client, namespace), lambda p: p.total == 1, what="node")

    async def dead_letters() -> int:
        info = await js.stream_info(namespace.stream("FACTORY_DLQ"))
        return info.state.messages

    assert await wait_until(dead_letters, lambda n: n == 1, what="dead letter") == 1
    assert list(service.monitor.nodes) == ["gpu-a009"]
