"""The scheduler's tables (prefix ``scheduling_``): capacity view, jobs, quotas, key holds.

The capacity view (sites, racks, nodes) is written only from inventory's and
health's events; jobs carry their spec (JSON), state, reason and current allocation
(node -> accelerator mask, JSON), which is all a restart needs to rebuild the
in-memory engine exactly. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, LargeBinary, Text
from sqlmodel import Field, SQLModel


class SiteRow(SQLModel, table=True):
    """A site and its jurisdiction (from inventory)."""

    __tablename__ = "scheduling_sites"

    site_id: str = Field(primary_key=True)
    jurisdiction: str = ""


class RackRow(SQLModel, table=True):
    """A rack and its NVLink domain size (from inventory)."""

    __tablename__ = "scheduling_racks"

    rack_id: str = Field(primary_key=True)
    site_id: str
    domain_size: int = 0


class NodeRow(SQLModel, table=True):
    """A node as the scheduler sees it (from inventory and health)."""

    __tablename__ = "scheduling_nodes"

    node_id: str = Field(primary_key=True)
    site_id: str
    rack_id: str
    model: str
    capacity: int
    state: str
    dedicated: str | None = None
    healthy: bool = True


class JobRow(SQLModel, table=True):
    """A job: its spec, where it stands and what it holds."""

    __tablename__ = "scheduling_jobs"

    job_id: str = Field(primary_key=True)
    tenant: str = Field(index=True)
    client_job_id: str
    seq: int = Field(index=True)
    priority: str
    state: str = Field(index=True)
    reason: str = ""
    message: str = ""
    attempt: int = 0
    requeues: int = 0
    spec: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    placement: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """JSON: model, site, width, nodes {node: mask}, held, spans; None when not placed."""
    key_sites: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """JSON list of sites where the dataset key is usable (None: no key / not checked)."""
    key_pending: bool = False
    submitted_at: dt.datetime
    updated_at: dt.datetime
    placed_at: dt.datetime | None = None
    waiting_since: dt.datetime | None = None


class QuotaRow(SQLModel, table=True):
    """A tenant's accelerator quota for one model (``*``: any other)."""

    __tablename__ = "scheduling_quotas"

    tenant: str = Field(primary_key=True)
    model: str = Field(primary_key=True)
    accelerators: int


class KeyHoldRow(SQLModel, table=True):
    """A tenant dataset key that may not be used (revoked, disabled, destroyed)."""

    __tablename__ = "scheduling_key_holds"

    tenant: str = Field(primary_key=True)
    key_id: str = Field(primary_key=True)
    state: str
    since: dt.datetime
