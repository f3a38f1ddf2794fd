"""The inventory repository: reading and writing sites, racks and nodes.

Set-based where it matters: an import inserts its sites, racks and nodes with one
executemany ``INSERT`` each, and loads what inventory holds with three ``SELECT``s.
State changes are compare-and-set (``UPDATE ... WHERE state = <expected>``), so two
replicas racing on one node cannot both apply a transition. Everything runs on the
unit of work's connection, inside its transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec
from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from aifactory.contracts.inventory.v1 import Accelerator, Node, NodeSpec, NodeState
from aifactory.inventory.domain import (
    NodeRecord,
    RackRecord,
    SiteRecord,
    Snapshot,
    effective_tenant,
)
from aifactory.inventory.tables import NodeRow, RackRow, SiteRow

SITES = cast(Any, SiteRow).__table__
RACKS = cast(Any, RackRow).__table__
NODES = cast(Any, NodeRow).__table__

_labels_decoder = msgspec.json.Decoder(dict[str, str])
_accelerators_decoder = msgspec.json.Decoder(list[Accelerator])
_encoder = msgspec.json.Encoder()


def encode_labels(labels: Mapping[str, str]) -> str:
    """Labels as stored (JSON, keys sorted)."""
    return _encoder.encode(dict(sorted(labels.items()))).decode() if labels else "{}"


def encode_accelerators(accelerators: Sequence[Accelerator]) -> str:
    """Accelerator devices as stored (JSON list)."""
    return _encoder.encode(list(accelerators)).decode() if accelerators else "[]"


def spec_of_row(row: RowMapping) -> NodeSpec:
    """The hardware record of a node row."""
    labels = row["labels"]
    accelerators = row["accelerators"]
    return NodeSpec(
        node_id=row["node_id"],
        site_id=row["site_id"],
        rack_id=row["rack_id"],
        model=row["model"],
        accelerator_count=row["accelerator_count"],
        accelerator_memory_gib=row["accelerator_memory_gib"],
        cpu_cores=row["cpu_cores"],
        ram_gib=row["ram_gib"],
        interconnect=row["interconnect"],
        labels=_labels_decoder.decode(labels) if labels != "{}" else {},
        accelerators=_accelerators_decoder.decode(accelerators) if accelerators != "[]" else [],
    )


def node_of_row(row: RowMapping) -> Node:
    """The ``Node`` contract of a node row."""
    return Node(
        **msgspec.structs.asdict(spec_of_row(row)),
        state=row["state"],
        state_reason=row["state_reason"],
        state_actor=row["state_actor"],
        state_changed_at=row["state_changed_at"],
        tenant=row["tenant"],
        dedicated_via="node" if row["node_tenant"] else ("rack" if row["tenant"] else None),
        registered_at=row["registered_at"],
        updated_at=row["updated_at"],
    )


def node_values(
    spec: NodeSpec,
    *,
    state: NodeState,
    actor: str,
    reason: str,
    node_tenant: str | None,
    tenant: str | None,
    now: dt.datetime,
) -> dict[str, object]:
    """The column values of a new node row."""
    return {
        "node_id": spec.node_id,
        "site_id": spec.site_id,
        "rack_id": spec.rack_id,
        "model": spec.model,
        "accelerator_count": spec.accelerator_count,
        "accelerator_memory_gib": spec.accelerator_memory_gib,
        "cpu_cores": spec.cpu_cores,
        "ram_gib": spec.ram_gib,
        "interconnect": spec.interconnect,
        "labels": encode_labels(spec.labels),
        "accelerators": encode_accelerators(spec.accelerators),
        "state": state,
        "state_reason": reason,
        "state_actor": actor,
        "state_changed_at": now,
        "failed_by_health": False,
        "node_tenant": node_tenant,
        "tenant": tenant,
        "health_observed_at": None,
        "registered_at": now,
        "updated_at": now,
    }


def hardware_values(spec: NodeSpec) -> dict[str, object]:
    """The column values of a node's changeable hardware fields."""
    return {
        "rack_id": spec.rack_id,
        "model": spec.model,
        "accelerator_count": spec.accelerator_count,
        "accelerator_memory_gib": spec.accelerator_memory_gib,
        "cpu_cores": spec.cpu_cores,
        "ram_gib": spec.ram_gib,
        "interconnect": spec.interconnect,
        "labels": encode_labels(spec.labels),
        "accelerators": encode_accelerators(spec.accelerators),
    }


@dataclass(frozen=True, slots=True)
class NodeFilter:
    """The filters of a node listing."""

    site_id: str | None = None
    rack_id: str | None = None
    model: str | None = None
    state: str | None = None
    tenant: str | None = None
    shared_only: bool = False


class InventoryRepository:
    """Sites, racks and nodes on one transaction's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # ------------------------------------------------------------ reads
    async def snapshot(self) -> Snapshot:
        """Everything inventory holds, for planning an import."""
        sites = {
            r["site_id"]: SiteRecord(r["site_id"], r["name"], r["region"], r["jurisdiction"])
            for r in (await self.conn.execute(select(SITES))).mappings()
        }
        racks = {
            r["rack_id"]: RackRecord(
                r["rack_id"], r["site_id"], r["kind"], r["nvlink_domain_size"], r["tenant"]
            )
            for r in (await self.conn.execute(select(RACKS))).mappings()
        }
        nodes = {
            r["node_id"]: NodeRecord(spec_of_row(r), r["state"], r["node_tenant"], r["tenant"])
            for r in (await self.conn.execute(select(NODES))).mappings()
        }
        return Snapshot(sites, racks, nodes)

    async def node(self, node_id: str, *, for_update: bool = False) -> RowMapping | None:
        """One node row, or None."""
        query = select(NODES).where(NODES.c.node_id == node_id)
        if for_update and self.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return (await self.conn.execute(query)).mappings().first()

    async def rack(self, rack_id: str) -> RowMapping | None:
        """One rack row, or None."""
        query = select(RACKS).where(RACKS.c.rack_id == rack_id)
        return (await self.conn.execute(query)).mappings().first()

    async def site_exists(self, site_id: str) -> bool:
        """Whether inventory holds the site."""
        query = select(SITES.c.site_id).where(SITES.c.site_id == site_id)
        return (await self.conn.execute(query)).first() is not None

    async def rack_node_tenants(self, rack_id: str) -> dict[str, tuple[str | None, str | None]]:
        """Node id -> (own dedication, effective tenant) for every node in a rack."""
        query = select(NODES.c.node_id, NODES.c.node_tenant, NODES.c.tenant).where(
            NODES.c.rack_id == rack_id
        )
        return {r[0]: (r[1], r[2]) for r in (await self.conn.execute(query)).all()}

    def _filtered(self, query: Select[Any], filters: NodeFilter) -> Select[Any]:
        c = NODES.c
        for column, value in (
            (c.site_id, filters.site_id),
            (c.rack_id, filters.rack_id),
            (c.model, filters.model),
            (c.state, filters.state),
            (c.tenant, filters.tenant),
        ):
            if value is not None:
                query = query.where(column == value)
        if filters.shared_only:
            query = query.where(c.tenant.is_(None))
        return query

    async def list_nodes(
        self, filters: NodeFilter, *, after: str | None, limit: int
    ) -> tuple[list[RowMapping], int]:
        """Up to ``limit`` + 1 node rows after ``after`` in id order, and the total matching."""
        query = self._filtered(select(NODES), filters)
        if after is not None:
            query = query.where(NODES.c.node_id > after)
        rows = list(
            (await self.conn.execute(query.order_by(NODES.c.node_id).limit(limit + 1))).mappings()
        )
        total_query = self._filtered(select(func.count()).select_from(NODES), filters)
        total = (await self.conn.execute(total_query)).scalar_one()
        return rows, int(total)

    async def capacity_counts(
        self, site_id: str | None, model: str | None
    ) -> list[tuple[str, str, str, str | None, int, int]]:
        """(site, model, state, tenant, nodes, accelerators) groups."""
        c = NODES.c
        query = select(
            c.site_id, c.model, c.state, c.tenant, func.count(), func.sum(c.accelerator_count)
        ).group_by(c.site_id, c.model, c.state, c.tenant)
        if site_id is not None:
            query = query.where(c.site_id == site_id)
        if model is not None:
            query = query.where(c.model == model)
        return [
            (r[0], r[1], r[2], r[3], int(r[4]), int(r[5] or 0))
            for r in (await self.conn.execute(query)).all()
        ]

    async def export_rows(
        self, site_id: str | None
    ) -> tuple[list[RowMapping], list[RowMapping], list[RowMapping]]:
        """Site, rack and node rows (optionally of one site), in id order."""
        sites, racks, nodes = select(SITES), select(RACKS), select(NODES)
        if site_id is not None:
            sites = sites.where(SITES.c.site_id == site_id)
            racks = racks.where(RACKS.c.site_id == site_id)
            nodes = nodes.where(NODES.c.site_id == site_id)
        return (
            list((await self.conn.execute(sites.order_by(SITES.c.site_id))).mappings()),
            list((await self.conn.execute(racks.order_by(RACKS.c.rack_id))).mappings()),
            list((await self.conn.execute(nodes.order_by(NODES.c.node_id))).mappings()),
        )

    # ------------------------------------------------------------ writes
    async def insert_many(self, table: Any, rows: Sequence[Mapping[str, object]]) -> None:
        """Insert rows with one executemany."""
        if rows:
            await self.conn.execute(insert(table), list(rows))

    async def update_one(
        self, table: Any, key: str, key_value: str, values: Mapping[str, object]
    ) -> None:
        """Update one row by primary key."""
        column = table.c[key]
        await self.conn.execute(update(table).where(column == key_value).values(**values))

    async def set_state(
        self,
        node_id: str,
        *,
        expected: str,
        state: str,
        reason: str,
        actor: str,
        at: dt.datetime,
        failed_by_health: bool,
        health_observed_at: dt.datetime | None = None,
    ) -> bool:
        """Move a node from ``expected`` to ``state``; False when it was not in ``expected``."""
        values: dict[str, object] = {
            "state": state,
            "state_reason": reason,
            "state_actor": actor,
            "state_changed_at": at,
            "failed_by_health": failed_by_health,
            "updated_at": at,
        }
        if health_observed_at is not None:
            values["health_observed_at"] = health_observed_at
        result = await self.conn.execute(
            update(NODES)
            .where(NODES.c.node_id == node_id, NODES.c.state == expected)
            .values(**values)
        )
        return bool(result.rowcount == 1)

    async def note_verdict(self, node_id: str, observed_at: dt.datetime) -> None:
        """Record the time of the latest verdict applied to a node."""
        await self.update_one(NODES, "node_id", node_id, {"health_observed_at": observed_at})

    async def set_rack_tenant(self, rack_id: str, tenant: str | None, at: dt.datetime) -> None:
        """Set a rack's own dedication and recompute its nodes' effective tenant."""
        await self.update_one(RACKS, "rack_id", rack_id, {"tenant": tenant, "updated_at": at})
        await self.conn.execute(
            update(NODES)
            .where(NODES.c.rack_id == rack_id, NODES.c.node_tenant.is_(None))
            .values(tenant=tenant)
        )

    async def set_node_tenant(
        self, node_id: str, node_tenant: str | None, rack_tenant: str | None, at: dt.datetime
    ) -> None:
        """Set a node's own dedication and its effective tenant."""
        await self.update_one(
            NODES,
            "node_id",
            node_id,
            {
                "node_tenant": node_tenant,
                "tenant": effective_tenant(node_tenant, rack_tenant),
                "updated_at": at,
            },
        )

    async def nodes_by_id(self, node_ids: Iterable[str]) -> dict[str, RowMapping]:
        """Node rows by id (ids inventory does not hold are absent)."""
        ids = list(node_ids)
        found: dict[str, RowMapping] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            query = select(NODES).where(NODES.c.node_id.in_(chunk))
            for row in (await self.conn.execute(query)).mappings():
                found[row["node_id"]] = row
        return found
