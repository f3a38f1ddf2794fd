"""Inventory's use cases against a real database (SQLite and PostgreSQL), without NATS."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable

import msgspec
import pytest
import pytest_asyncio

from aifactory.contracts.cloudevents import CloudEvent
from aifactory.contracts.envelope import Envelope
from aifactory.contracts.health.v1 import HealthReason, NodeHealthChanged
from aifactory.contracts.inventory.v1 import (
    Dedicate,
    GetCapacity,
    GetNode,
    ImportFactory,
    ListNodes,
    NodeSpec,
    NodeStateChanged,
    RegisterNode,
    Undedicate,
    UpdateNode,
)
from aifactory.contracts.registry import spec_of
from aifactory.inventory import queries
from aifactory.inventory.errors import (
    DedicationConflict,
    DescriptionError,
    HardwareConflict,
    InvalidTransition,
    UnknownReference,
)
from aifactory.inventory.handlers import HealthPolicy, InventoryHandlers
from aifactory.store.store import Store

ACTOR = "alice@ops"
T0 = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """An inventory database with all tables."""
    db = Store(database_url, source="/aifactory/inventory")
    await db.create_all()
    yield db
    await db.dispose()


@pytest_asyncio.fixture
async def imported(store: Store, small_factory: str) -> Store:
    """The store after importing the small factory."""
    async with store.unit_of_work() as uow:
        await InventoryHandlers().import_factory(
            ImportFactory(description_yaml=small_factory, actor=ACTOR), uow
        )
    return store


def _verdict(node_id: str, verdict: str, minute: int) -> Envelope[NodeHealthChanged]:
    data = NodeHealthChanged(
        node_id=node_id,
        site_id="fra1",
        verdict=verdict,  # type: ignore[arg-type]
        reasons=[
            HealthReason(code="xid_79", message="GPU has fallen off the bus", component="gpu:3")
        ],
        first_seen=T0,
        observed_at=T0 + dt.timedelta(minutes=minute),
    )
    spec = spec_of(data)
    event = CloudEvent(id=f"v-{node_id}-{minute}", source="/aifactory/health", type=spec.ce_type)
    return Envelope(event=event, data=data, spec=spec)


async def test_import_emits_one_event_per_change_and_reimport_none(
    store: Store, small_factory: str
) -> None:
    """The first import emits 12 events (2 sites, 3 racks, 7 nodes); the same file again emits none."""
    handlers = InventoryHandlers()
    command = ImportFactory(description_yaml=small_factory, actor=ACTOR)
    async with store.unit_of_work() as uow:
        first = await handlers.import_factory(command, uow)
        assert len(uow.emitted) == 12
    assert (first.sites_created, first.racks_created, first.nodes_created) == (2, 3, 7)
    async with store.unit_of_work() as uow:
        second = await handlers.import_factory(command, uow)
        assert uow.emitted == []
    assert (second.nodes_unchanged, second.events) == (7, 0)


async def test_editing_one_node_emits_one_update(
    imported: Store, small_factory: str, edit: Callable[[str, str, str], str]
) -> None:
    """Changing one field of one node in the file emits exactly one NodeUpdated with that field."""
    text = edit(small_factory, "id: trn-c001", "id: trn-c001\n    labels: {pool: inference}")
    async with imported.unit_of_work() as uow:
        summary = await InventoryHandlers().import_factory(
            ImportFactory(description_yaml=text, actor=ACTOR), uow
        )
        (event,) = uow.emitted
    assert summary.nodes_updated == 1
    assert event.event.type == "io.aifactory.inventory.node_updated.v1"
    assert b'"field":"labels"' in event.body


async def test_bad_import_applies_nothing(imported: Store, small_factory: str) -> None:
    """A description with one bad node (unknown rack) applies none of its other new nodes."""
    text = small_factory.replace(
        "dedications:",
        (
            "  - id: new[1-5]\n    site: fra1\n    rack: fra1-r01\n    model: B200\n    accelerator_count: 8\n"
            "    accelerator_memory_gib: 180\n    cpu_cores: 112\n    ram_gib: 2048\n"
            "  - id: bad1\n    site: fra1\n    rack: nowhere\n    model: B200\n    accelerator_count: 8\n"
            "    accelerator_memory_gib: 180\n    cpu_cores: 112\n    ram_gib: 2048\n"
            "dedications:"
        ),
    )
    with pytest.raises(DescriptionError, match="unknown rack 'nowhere'"):
        async with imported.unit_of_work() as uow:
            await InventoryHandlers().import_factory(
                ImportFactory(description_yaml=text, actor=ACTOR), uow
            )
    async with imported.unit_of_work() as uow:
        page = await queries.list_nodes(ListNodes(), uow)
    assert page.total == 7


async def test_state_change_and_invalid_transition(imported: Store) -> None:
    """Cordon emits one state change; cordon again emits nothing; maintenance from cordoned is refused."""
    handlers = InventoryHandlers()
    async with imported.unit_of_work() as uow:
        result = await handlers.change_state("gpu-a001", "cordoned", "NVLink flaps", ACTOR, uow)
        (event,) = uow.emitted
    assert (result.previous_state, result.state, result.changed) == ("available", "cordoned", True)
    assert event.event.subject == "gpu-a001"
    async with imported.unit_of_work() as uow:
        again = await handlers.change_state("gpu-a001", "cordoned", "again", ACTOR, uow)
        assert uow.emitted == []
    assert again.changed is False
    with pytest.raises(InvalidTransition, match="drain it first"):
        async with imported.unit_of_work() as uow:
            await handlers.change_state("gpu-a001", "maintenance", "fix", ACTOR, uow)
    with pytest.raises(UnknownReference):
        async with imported.unit_of_work() as uow:
            await handlers.change_state("nope", "cordoned", "x", ACTOR, uow)


async def test_fatal_verdict_fails_node_and_manual_return_is_respected(imported: Store) -> None:
    """A failed verdict marks the node failed with its reason; a later healthy verdict leaves it failed."""
    handlers = InventoryHandlers()
    async with imported.unit_of_work() as uow:
        (event,) = await handlers.on_health_verdict(_verdict("gpu-a002", "failed", 1), uow)
    assert isinstance(event.data, NodeStateChanged)
    assert (event.data.from_state, event.data.to_state) == ("available", "failed")
    assert "xid_79" in event.data.reason
    assert event.data.actor == "/aifactory/health"
    async with imported.unit_of_work() as uow:
        assert await handlers.on_health_verdict(_verdict("gpu-a002", "healthy", 2), uow) == []
        node = (await queries.get_node(GetNode(node_id="gpu-a002"), uow)).node
    assert node.state == "failed"


async def test_auto_return_policy_returns_a_node_failed_by_health(imported: Store) -> None:
    """With auto-return on, a healthy verdict returns the node; a stale older verdict is ignored."""
    handlers = InventoryHandlers(HealthPolicy(auto_return=True))
    async with imported.unit_of_work() as uow:
        await handlers.on_health_verdict(_verdict("gpu-a003", "unreachable", 5), uow)
    async with imported.unit_of_work() as uow:
        assert await handlers.on_health_verdict(_verdict("gpu-a003", "healthy", 4), uow) == []
    async with imported.unit_of_work() as uow:
        (event,) = await handlers.on_health_verdict(_verdict("gpu-a003", "healthy", 6), uow)
    assert (event.data.from_state, event.data.to_state) == ("failed", "available")  # type: ignore[attr-defined]


async def test_unreachable_does_not_fail_when_policy_says_so(imported: Store) -> None:
    """With unreachable_fails off, an unreachable verdict changes nothing; unknown nodes are ignored."""
    handlers = InventoryHandlers(HealthPolicy(unreachable_fails=False))
    async with imported.unit_of_work() as uow:
        assert await handlers.on_health_verdict(_verdict("gpu-a004", "unreachable", 1), uow) == []
        assert await handlers.on_health_verdict(_verdict("ghost", "failed", 1), uow) == []


async def test_register_node_is_idempotent_and_refuses_conflicting_hardware(
    imported: Store,
) -> None:
    """Registering the same hardware twice creates once; different hardware is a conflict; unknown rack not found."""
    handlers = InventoryHandlers()
    spec = NodeSpec(
        node_id="gpu-z1",
        site_id="fra1",
        rack_id="fra1-r02",
        model="B200",
        accelerator_count=8,
        accelerator_memory_gib=180,
        cpu_cores=112,
        ram_gib=2048,
    )
    async with imported.unit_of_work() as uow:
        created = await handlers.register_node(RegisterNode(node=spec, actor=ACTOR), uow)
        assert len(uow.emitted) == 1
    assert created.created is True
    assert created.node.tenant == "acme"
    async with imported.unit_of_work() as uow:
        again = await handlers.register_node(RegisterNode(node=spec, actor=ACTOR), uow)
        assert uow.emitted == []
    assert again.created is False
    with pytest.raises(HardwareConflict, match="ram_gib"):
        async with imported.unit_of_work() as uow:
            await handlers.register_node(
                RegisterNode(node=_replace(spec, ram_gib=1), actor=ACTOR), uow
            )
    with pytest.raises(UnknownReference, match="unknown rack"):
        async with imported.unit_of_work() as uow:
            await handlers.register_node(
                RegisterNode(node=_replace(spec, node_id="gpu-z2", rack_id="r404"), actor=ACTOR),
                uow,
            )


def _replace(spec: NodeSpec, **changes: object) -> NodeSpec:
    return msgspec.structs.replace(spec, **changes)


async def test_update_node_emits_changed_fields_only(imported: Store) -> None:
    """UpdateNode reports and emits exactly the changed fields; an update changing nothing emits nothing."""
    handlers = InventoryHandlers()
    async with imported.unit_of_work() as uow:
        result = await handlers.update_node(
            UpdateNode(node_id="gpu-a001", ram_gib=1920, cpu_cores=144, actor=ACTOR), uow
        )
        assert len(uow.emitted) == 1
    assert [(c.field, c.before, c.after) for c in result.changes] == [("ram_gib", 960, 1920)]
    async with imported.unit_of_work() as uow:
        same = await handlers.update_node(
            UpdateNode(node_id="gpu-a001", ram_gib=1920, actor=ACTOR), uow
        )
        assert uow.emitted == []
    assert same.changes == []


async def test_dedication_rules(imported: Store) -> None:
    """Dedicating a rack covers its nodes; a node of another tenant in a dedicated rack is refused; undedicate frees."""
    handlers = InventoryHandlers()
    async with imported.unit_of_work() as uow:
        result = await handlers.dedicate(
            Dedicate(target="rack", target_id="fra1-r01", tenant="globex", actor=ACTOR), uow
        )
        assert len(uow.emitted) == 1
    assert result.node_ids == ["gpu-a001", "gpu-a002", "gpu-a003", "gpu-a004"]
    with pytest.raises(DedicationConflict, match="dedicated as a whole to globex"):
        async with imported.unit_of_work() as uow:
            await handlers.dedicate(
                Dedicate(target="node", target_id="gpu-a001", tenant="acme", actor=ACTOR), uow
            )
    async with imported.unit_of_work() as uow:
        freed = await handlers.undedicate(
            Undedicate(target="rack", target_id="fra1-r01", actor=ACTOR), uow
        )
        page = await queries.list_nodes(ListNodes(tenant="globex"), uow)
    assert (freed.previous_tenant, freed.tenant, page.total) == ("globex", None, 0)


async def test_capacity_per_site_and_model(imported: Store) -> None:
    """Capacity counts nodes and accelerators per site and model, available, failed and per tenant."""
    handlers = InventoryHandlers()
    async with imported.unit_of_work() as uow:
        await handlers.on_health_verdict(_verdict("gpu-a001", "failed", 1), uow)
    async with imported.unit_of_work() as uow:
        await handlers.change_state("gpu-b02", "retired", "end of life", ACTOR, uow)
    async with imported.unit_of_work() as uow:
        report = await queries.get_capacity(GetCapacity(site_id="fra1"), uow)
    rows = {(r.site_id, r.model): r for r in report.rows}
    gb200 = rows[("fra1", "GB200")]
    assert (gb200.nodes_total, gb200.accelerators_total) == (4, 16)
    assert (gb200.nodes_available, gb200.nodes_failed, gb200.accelerators_failed) == (3, 1, 4)
    b200 = rows[("fra1", "B200")]
    assert (b200.nodes_total, b200.nodes_by_state) == (1, {"available": 1, "retired": 1})
    assert [(d.tenant, d.nodes, d.accelerators) for d in b200.dedicated] == [("acme", 1, 8)]
    assert ("iad1", "Trainium3") not in rows


async def test_list_pages_through_all_nodes_with_filters(imported: Store) -> None:
    """Listing 3 at a time visits every node once in id order; filters narrow the total."""
    seen: list[str] = []
    after = None
    async with imported.unit_of_work() as uow:
        while True:
            page = await queries.list_nodes(ListNodes(limit=3, after=after), uow)
            seen.extend(n.node_id for n in page.nodes)
            if page.next_after is None:
                break
            after = page.next_after
        by_model = await queries.list_nodes(ListNodes(model="GB200", site_id="fra1"), uow)
        shared = await queries.list_nodes(ListNodes(shared_only=True), uow)
    assert seen == sorted(seen)
    assert len(seen) == 7
    assert by_model.total == 4
    assert shared.total == 5
