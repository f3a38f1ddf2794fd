"""The inventory service over a real nats-server, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import msgspec
import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, request
from aifactory.bus.service import Service
from aifactory.contracts.cloudevents import H_TYPE
from aifactory.contracts.envelope import build_message
from aifactory.contracts.health.v1 import HealthReason, NodeHealthChanged
from aifactory.contracts.inventory.v1 import (
    CapacityReport,
    CordonNode,
    DrainNode,
    GetCapacity,
    GetNode,
    ImportFactory,
    ImportSummary,
    ListNodes,
    NodeDetails,
    NodePage,
    NodeStateChanged,
    NodeStateResult,
    NodeUpdated,
    StartNodeMaintenance,
)
from aifactory.contracts.replies import ERROR_REPLY_TYPE, ErrorReply
from aifactory.testing.waiting import wait_until

from .conftest import InventoryFactory, StreamReader

pytestmark = pytest.mark.integration
ACTOR = "alice@ops"
SMALL_EVENTS = 12


async def _import(nc: Client, svc: Service, text: str) -> ImportSummary:
    command = ImportFactory(description_yaml=text, actor=ACTOR)
    return await request(nc, command, ImportSummary, namespace=svc.bus.namespace, timeout=30)


async def test_import_emits_cloudevents_and_reimport_emits_nothing(
    inventory: Service,
    inventory_stream: StreamReader,
    nats_client: Client,
    small_factory: str,
    edit: Callable[[str, str, str], str],
) -> None:
    """Import emits one CloudEvent per site, rack and node; the same file again emits nothing; one edit emits one update."""
    summary = await _import(nats_client, inventory, small_factory)
    assert (summary.nodes_created, summary.events) == (7, SMALL_EVENTS)
    assert await inventory_stream.wait_count(SMALL_EVENTS) == SMALL_EVENTS
    headers, first = await inventory_stream.message(1)
    for header in (
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-specversion",
        "ce-time",
        "ce-dataschema",
        "traceparent",
    ):
        assert headers[header]
    assert headers["ce-source"] == "/aifactory/inventory"
    assert headers["Nats-Msg-Id"] == headers["ce-id"]
    assert first.event.type == "io.aifactory.inventory.site_registered.v1"
    types = await inventory_stream.types(1, SMALL_EVENTS)
    assert types.count("io.aifactory.inventory.node_registered.v1") == 7

    again = await _import(nats_client, inventory, small_factory)
    assert (again.events, again.nodes_unchanged) == (0, 7)
    changed = edit(
        small_factory, "    rack: fra1-r02\n    model: B200", "    rack: fra1-r02\n    model: B300"
    )
    third = await _import(nats_client, inventory, changed)
    assert (third.nodes_updated, third.events) == (2, 2)
    # Exactly the two updates follow the first import: the re-import emitted nothing.
    assert await inventory_stream.wait_count(SMALL_EVENTS + 2) == SMALL_EVENTS + 2
    _, update = await inventory_stream.message(SMALL_EVENTS + 1)
    assert isinstance(update.data, NodeUpdated)
    assert [(c.field, c.before, c.after) for c in update.data.changes] == [
        ("model", "B200", "B300")
    ]


async def test_one_node_edit_emits_exactly_one_event(
    inventory: Service,
    inventory_stream: StreamReader,
    nats_client: Client,
    small_factory: str,
    edit: Callable[[str, str, str], str],
) -> None:
    """Editing one node in the file emits exactly one NodeUpdated on the stream."""
    await _import(nats_client, inventory, small_factory)
    await inventory_stream.wait_count(SMALL_EVENTS)
    edited = edit(small_factory, "id: trn-c001", "id: trn-c001\n    interconnect: EFAv3")
    assert (await _import(nats_client, inventory, edited)).events == 1
    await inventory_stream.wait_count(SMALL_EVENTS + 1)
    ns = inventory.bus.namespace
    await request(
        nats_client,
        CordonNode(node_id="gpu-a001", reason="marker", actor=ACTOR),
        NodeStateResult,
        namespace=ns,
    )
    assert await inventory_stream.wait_count(SMALL_EVENTS + 2) == SMALL_EVENTS + 2
    assert await inventory_stream.types(SMALL_EVENTS + 1, SMALL_EVENTS + 2) == [
        "io.aifactory.inventory.node_updated.v1",
        "io.aifactory.inventory.node_state_changed.v1",
    ]


async def test_state_change_emits_one_event_and_invalid_transition_none(
    inventory: Service, inventory_stream: StreamReader, nats_client: Client, small_factory: str
) -> None:
    """Drain emits one NodeStateChanged; maintenance of an available node gets a typed conflict and emits nothing."""
    ns = inventory.bus.namespace
    await _import(nats_client, inventory, small_factory)
    await inventory_stream.wait_count(SMALL_EVENTS)
    with pytest.raises(CommandFailed) as refused:
        await request(
            nats_client,
            StartNodeMaintenance(node_id="gpu-a002", reason="fix", actor=ACTOR),
            NodeStateResult,
            namespace=ns,
        )
    assert refused.value.error.code == "conflict"
    assert "drain it first" in refused.value.error.message
    assert refused.value.error.details["from"] == "available"
    result = await request(
        nats_client,
        DrainNode(node_id="gpu-a002", reason="swap GPU", actor=ACTOR),
        NodeStateResult,
        namespace=ns,
    )
    assert (result.previous_state, result.state) == ("available", "draining")
    again = await request(
        nats_client,
        DrainNode(node_id="gpu-a002", reason="swap GPU", actor=ACTOR),
        NodeStateResult,
        namespace=ns,
    )
    assert again.changed is False
    await request(
        nats_client,
        StartNodeMaintenance(node_id="gpu-a002", reason="swap GPU", actor=ACTOR),
        NodeStateResult,
        namespace=ns,
    )
    assert await inventory_stream.wait_count(SMALL_EVENTS + 2) == SMALL_EVENTS + 2
    _, drained = await inventory_stream.message(SMALL_EVENTS + 1)
    _, maintained = await inventory_stream.message(SMALL_EVENTS + 2)
    assert isinstance(drained.data, NodeStateChanged)
    assert (drained.data.from_state, drained.data.to_state, drained.data.actor) == (
        "available",
        "draining",
        ACTOR,
    )
    assert isinstance(maintained.data, NodeStateChanged)
    assert maintained.data.to_state == "maintenance"


async def test_fatal_health_verdict_marks_node_failed(
    inventory: Service, inventory_stream: StreamReader, nats_client: Client, small_factory: str
) -> None:
    """A failed verdict on FACTORY_HEALTH marks the node failed and emits the state change with the verdict's reason."""
    ns = inventory.bus.namespace
    await _import(nats_client, inventory, small_factory)
    await inventory_stream.wait_count(SMALL_EVENTS)
    now = dt.datetime.now(dt.UTC)
    verdict = NodeHealthChanged(
        node_id="gpu-a003",
        site_id="fra1",
        verdict="failed",
        previous_verdict="healthy",
        reasons=[
            HealthReason(code="xid_79", message="GPU has fallen off the bus", component="gpu:2")
        ],
        recommended_action="replace",
        first_seen=now,
        observed_at=now,
    )
    message = build_message(verdict, source="/aifactory/health", scope="fra1", subject="gpu-a003")
    await nats_client.jetstream().publish(
        ns.subject(message.subject), message.body, headers=message.headers
    )
    await inventory_stream.wait_count(SMALL_EVENTS + 1)
    _, changed = await inventory_stream.message(SMALL_EVENTS + 1)
    assert isinstance(changed.data, NodeStateChanged)
    assert (changed.data.node_id, changed.data.from_state, changed.data.to_state) == (
        "gpu-a003",
        "available",
        "failed",
    )
    assert "GPU has fallen off the bus" in changed.data.reason
    details = await request(nats_client, GetNode(node_id="gpu-a003"), NodeDetails, namespace=ns)
    assert details.node.state == "failed"


async def test_bad_input_gets_typed_errors_and_service_keeps_running(
    inventory: Service, nats_client: Client, small_factory: str
) -> None:
    """Malformed YAML names its line, bytes and unknown fields get invalid_request, tenants are unauthorized; queries still answer."""
    ns = inventory.bus.namespace
    with pytest.raises(CommandFailed) as bad_yaml:
        await _import(
            nats_client, inventory, "sites:\n  - id: fra1\n    jurisdiction: EU/DE\nracks: [\n"
        )
    assert bad_yaml.value.error.code == "invalid_request"
    assert bad_yaml.value.error.details["line"] == "4"
    with pytest.raises(CommandFailed) as unknown_model:
        await _import(
            nats_client, inventory, small_factory.replace("model: GB200", "model: MI300X")
        )
    assert unknown_model.value.error.details["path"] == "nodes[0].model"
    subject = ns.subject("factory.inventory.v1.cmd.cordon_node")
    for body in (
        b"\xff\xfe not json",
        b'{"node_id":"n1","reason":"r","actor":"a","force":true}',
        b'{"node_id":"N 1","reason":"r","actor":"a"}',
    ):
        response = await nats_client.request(subject, body, timeout=5)
        assert response.headers is not None
        assert response.headers[H_TYPE] == ERROR_REPLY_TYPE
        assert msgspec.json.decode(response.data, type=ErrorReply).code == "invalid_request"
    with pytest.raises(CommandFailed) as tenant:
        await request(
            nats_client,
            CordonNode(node_id="gpu-a001", reason="mine", actor="x"),
            NodeStateResult,
            namespace=ns,
            tenant="acme",
        )
    assert tenant.value.error.code == "unauthorized"
    with pytest.raises(CommandFailed) as missing:
        await request(nats_client, GetNode(node_id="ghost"), NodeDetails, namespace=ns)
    assert missing.value.error.code == "not_found"
    page = await request(nats_client, ListNodes(), NodePage, namespace=ns)
    assert page.total == 0, "the refused imports applied nothing"


async def test_queries_answer_from_database_and_restart_keeps_state(
    start_inventory: InventoryFactory, nats_client: Client, small_factory: str
) -> None:
    """After a restart on the same database the nodes, states and capacity are all still there."""
    first = await start_inventory()
    ns = first.bus.namespace
    await _import(nats_client, first, small_factory)
    await request(
        nats_client,
        CordonNode(node_id="gpu-a004", reason="flaky", actor=ACTOR),
        NodeStateResult,
        namespace=ns,
    )
    await first.stop()
    second = await start_inventory()
    details = await request(
        nats_client, GetNode(node_id="gpu-a004"), NodeDetails, namespace=second.bus.namespace
    )
    assert (details.node.state, details.node.state_reason) == ("cordoned", "flaky")
    capacity = await request(nats_client, GetCapacity(), CapacityReport, namespace=ns)
    assert sum(r.nodes_total for r in capacity.rows) == 7
    acme = [d for r in capacity.rows for d in r.dedicated if d.tenant == "acme"]
    assert [(d.nodes, d.accelerators) for d in acme] == [(2, 16)]
    summary = await _import(nats_client, second, small_factory)
    assert summary.events == 0
    listed = await wait_until(
        lambda: request(nats_client, ListNodes(state="cordoned"), NodePage, namespace=ns),
        lambda p: p.total == 1,
    )
    assert listed.nodes[0].node_id == "gpu-a004"
