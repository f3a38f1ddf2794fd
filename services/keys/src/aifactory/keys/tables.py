"""The keys service's tables: key rings, wrapped key versions, the audit chains.

``keys_versions.wrapped`` holds a tenant key version only as wrapped by the root of
trust, and becomes NULL when the key is destroyed (crypto-shredding). ``keys_audit``
holds each tenant's hash chain; its primary key (chain, seq) makes two writers racing
for the same position fail loudly instead of forking the chain.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel


class KeyRingRow(SQLModel, table=True):
    """One tenant key ring: state, policy (JSON) and version bounds."""

    __tablename__ = "keys_rings"
    __table_args__ = (
        Index("ix_keys_rings_rotation_due", "rotation_due_at"),
        Index("ix_keys_rings_destroy_after", "destroy_after"),
    )

    tenant: str = Field(primary_key=True, max_length=64)
    key_id: str = Field(primary_key=True, max_length=64)
    state: str = Field(max_length=32)
    policy: str = Field(sa_column=Column(Text, nullable=False))
    latest_version: int
    min_decryption_version: int
    created_at: dt.datetime
    rotated_at: dt.datetime
    rotation_due_at: dt.datetime | None = None
    destroy_after: dt.datetime | None = None
    state_before_destruction: str | None = Field(default=None, max_length=32)


class KeyVersionRow(SQLModel, table=True):
    """One version of a tenant key, wrapped by the root of trust (NULL once destroyed)."""

    __tablename__ = "keys_versions"

    tenant: str = Field(primary_key=True, max_length=64)
    key_id: str = Field(primary_key=True, max_length=64)
    version: int = Field(primary_key=True)
    wrapped: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    created_at: dt.datetime
    destroyed_at: dt.datetime | None = None


class AuditRow(SQLModel, table=True):
    """One audit record: its chain position, hash and canonical JSON encoding."""

    __tablename__ = "keys_audit"

    chain: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True)
    record_hash: str = Field(max_length=64)
    record: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
