"""Inventory's tables: sites, racks and nodes (prefixed ``inventory_``).

A node row holds its hardware, its admin state (with the reason, actor and time of
the last change), its own dedication (``node_tenant``) and its effective tenant
(``tenant``: its own dedication, else its rack's), kept in step by the repository so
list and capacity queries filter on one indexed column. Labels and accelerator
devices are JSON text: they are read with the node, never queried inside.
``health_observed_at`` orders health verdicts, so a late, older verdict is ignored.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, ForeignKey, Index, String, Text
from sqlmodel import Field, SQLModel


class SiteRow(SQLModel, table=True):
    """A site: one data center under one jurisdiction."""

    __tablename__ = "inventory_sites"

    site_id: str = Field(primary_key=True, max_length=32)
    name: str = Field(default="", max_length=128)
    region: str = Field(default="", max_length=64)
    jurisdiction: str = Field(max_length=64)
    registered_at: dt.datetime
    updated_at: dt.datetime


class RackRow(SQLModel, table=True):
    """A rack and its NVLink domain, possibly dedicated to a tenant as a whole."""

    __tablename__ = "inventory_racks"

    rack_id: str = Field(primary_key=True, max_length=63)
    site_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("inventory_sites.site_id"), nullable=False, index=True
        )
    )
    kind: str = Field(max_length=64)
    nvlink_domain_size: int = 0
    tenant: str | None = Field(default=None, max_length=64)
    registered_at: dt.datetime
    updated_at: dt.datetime


class NodeRow(SQLModel, table=True):
    """A node: hardware, admin state and dedication."""

    __tablename__ = "inventory_nodes"
    __table_args__ = (
        # Covers the capacity GROUP BY (an index-only scan) and the site/model/state filters.
        Index(
            "ix_inventory_nodes_capacity",
            "site_id",
            "model",
            "state",
            "tenant",
            "accelerator_count",
        ),
        Index("ix_inventory_nodes_tenant", "tenant"),
        Index("ix_inventory_nodes_rack", "rack_id"),
    )

    node_id: str = Field(primary_key=True, max_length=63)
    site_id: str = Field(
        sa_column=Column(String(32), ForeignKey("inventory_sites.site_id"), nullable=False)
    )
    rack_id: str = Field(
        sa_column=Column(String(63), ForeignKey("inventory_racks.rack_id"), nullable=False)
    )
    model: str = Field(max_length=32)
    accelerator_count: int
    accelerator_memory_gib: int
    cpu_cores: int
    ram_gib: int
    interconnect: str = Field(default="", max_length=128)
    labels: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    accelerators: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    state: str = Field(max_length=16)
    state_reason: str = Field(default="", max_length=512)
    state_actor: str = Field(default="", max_length=128)
    state_changed_at: dt.datetime
    failed_by_health: bool = False
    node_tenant: str | None = Field(default=None, max_length=64)
    tenant: str | None = Field(default=None, max_length=64)
    health_observed_at: dt.datetime | None = None
    registered_at: dt.datetime
    updated_at: dt.datetime
