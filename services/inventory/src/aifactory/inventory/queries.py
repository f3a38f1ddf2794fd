"""Inventory's queries: get a node, list nodes a page at a time, capacity, export.

Queries answer from inventory's own database and change nothing. A node listing is
keyset-paginated in node id order and cut to stay under ``PAGE_BUDGET_BYTES`` of
JSON whatever ``limit`` says, so a reply always fits NATS' 1 MiB max payload.
Capacity is aggregated in the database (one ``GROUP BY``), per site and model;
retired nodes are not capacity and are left out of the totals (they still show in
``nodes_by_state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast, get_args

import msgspec

from aifactory.contracts.inventory.v1 import (
    AcceleratorModel,
    CapacityReport,
    CapacityRow,
    ExportFactory,
    FactoryExport,
    GetCapacity,
    GetNode,
    ListNodes,
    Node,
    NodeDetails,
    NodePage,
    NodeState,
    TenantCapacity,
)
from aifactory.inventory.domain import RackRecord, SiteRecord
from aifactory.inventory.errors import UnknownReference
from aifactory.inventory.export import render_description
from aifactory.inventory.store import InventoryRepository, NodeFilter, node_of_row, spec_of_row
from aifactory.store.uow import UnitOfWork

PAGE_BUDGET_BYTES = 768 * 1024
"""The most JSON a page of nodes may take (NATS' default max payload is 1 MiB)."""
_encoder = msgspec.json.Encoder()
_STATES: tuple[NodeState, ...] = get_args(NodeState)


async def _repo(uow: UnitOfWork) -> InventoryRepository:
    return InventoryRepository(await uow.session.connection())


async def get_node(query: GetNode, uow: UnitOfWork) -> NodeDetails:
    """One node, or ``not_found``."""
    row = await (await _repo(uow)).node(query.node_id)
    if row is None:
        raise UnknownReference(f"unknown node {query.node_id!r}", {"node_id": query.node_id})
    return NodeDetails(node=node_of_row(row))


async def list_nodes(query: ListNodes, uow: UnitOfWork) -> NodePage:
    """One page of nodes matching the filters."""
    filters = NodeFilter(
        site_id=query.site_id,
        rack_id=query.rack_id,
        model=query.model,
        state=query.state,
        tenant=query.tenant,
        shared_only=query.shared_only,
    )
    rows, total = await (await _repo(uow)).list_nodes(filters, after=query.after, limit=query.limit)
    nodes: list[Node] = []
    size = 0
    for row in rows[: query.limit]:
        node = node_of_row(row)
        size += len(_encoder.encode(node)) + 1
        if nodes and size > PAGE_BUDGET_BYTES:
            break
        nodes.append(node)
    more = len(nodes) < len(rows)
    return NodePage(nodes=nodes, total=total, next_after=nodes[-1].node_id if more else None)


@dataclass
class _Tally:
    """Running counts of one site and model (or one tenant's share of it)."""

    nodes: int = 0
    accelerators: int = 0
    nodes_available: int = 0
    accelerators_available: int = 0
    nodes_failed: int = 0
    accelerators_failed: int = 0
    by_state: dict[NodeState, int] = field(default_factory=dict)
    tenants: dict[str, _Tally] = field(default_factory=dict)

    def add(self, state: NodeState, nodes: int, accelerators: int) -> None:
        self.by_state[state] = self.by_state.get(state, 0) + nodes
        if state == "retired":
            return
        self.nodes += nodes
        self.accelerators += accelerators
        if state == "available":
            self.nodes_available += nodes
            self.accelerators_available += accelerators
        elif state == "failed":
            self.nodes_failed += nodes
            self.accelerators_failed += accelerators


async def get_capacity(query: GetCapacity, uow: UnitOfWork) -> CapacityReport:
    """Capacity per site and accelerator model."""
    groups = await (await _repo(uow)).capacity_counts(query.site_id, query.model)
    tallies: dict[tuple[str, AcceleratorModel], _Tally] = {}
    for site_id, model, state, tenant, nodes, accelerators in groups:
        tally = tallies.setdefault((site_id, cast(AcceleratorModel, model)), _Tally())
        tally.add(cast(NodeState, state), nodes, accelerators)
        if tenant is not None:
            tally.tenants.setdefault(tenant, _Tally()).add(
                cast(NodeState, state), nodes, accelerators
            )
    return CapacityReport(
        rows=[
            CapacityRow(
                site_id=site_id,
                model=model,
                nodes_total=t.nodes,
                accelerators_total=t.accelerators,
                nodes_available=t.nodes_available,
                accelerators_available=t.accelerators_available,
                nodes_failed=t.nodes_failed,
                accelerators_failed=t.accelerators_failed,
                nodes_by_state={s: t.by_state[s] for s in _STATES if s in t.by_state},
                dedicated=[
                    TenantCapacity(
                        tenant=tenant,
                        nodes=share.nodes,
                        accelerators=share.accelerators,
                        nodes_available=share.nodes_available,
                        accelerators_available=share.accelerators_available,
                    )
                    for tenant, share in sorted(t.tenants.items())
                    if share.nodes
                ],
            )
            for (site_id, model), t in sorted(tallies.items())
        ]
    )


async def export_factory(query: ExportFactory, uow: UnitOfWork) -> FactoryExport:
    """The inventory (or one site of it) as a YAML factory description."""
    sites, racks, nodes = await (await _repo(uow)).export_rows(query.site_id)
    if query.site_id is not None and not sites:
        raise UnknownReference(f"unknown site {query.site_id!r}", {"site_id": query.site_id})
    text = render_description(
        [SiteRecord(s["site_id"], s["name"], s["region"], s["jurisdiction"]) for s in sites],
        [
            RackRecord(r["rack_id"], r["site_id"], r["kind"], r["nvlink_domain_size"], r["tenant"])
            for r in racks
        ],
        [(spec_of_row(n), n["node_tenant"]) for n in nodes],
    )
    return FactoryExport(
        description_yaml=text, sites=len(sites), racks=len(racks), nodes=len(nodes)
    )
