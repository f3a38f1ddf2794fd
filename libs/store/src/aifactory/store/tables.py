"""The outbox and inbox tables every service's database has.

``aifactory_outbox`` holds events committed with the state change that caused them,
until the relay has published them (and for a retention period after, so they can
be published again if a stream lost them). ``aifactory_inbox`` holds the ids of
events a consumer applied, so a redelivered event is recognised and skipped.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Column, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel


class OutboxRecord(SQLModel, table=True):
    """An event waiting to be (or already) published to JetStream."""

    __tablename__ = "aifactory_outbox"
    __table_args__ = (Index("ix_aifactory_outbox_pending", "published_at", "seq"),)

    seq: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, unique=True)
    subject: str = Field(max_length=255)
    headers: str = Field(sa_column=Column(Text, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: dt.datetime = Field(index=True)
    published_at: dt.datetime | None = Field(default=None)


class InboxRecord(SQLModel, table=True):
    """An event a consumer has applied (consumer + event id is unique)."""

    __tablename__ = "aifactory_inbox"

    # event_id first: it is what a batch looks up (``event_id IN (...)``); with the
    # constant consumer first, PostgreSQL's generic plan scanned every inbox row.
    event_id: str = Field(max_length=64, primary_key=True)
    consumer: str = Field(max_length=128, primary_key=True)
    processed_at: dt.datetime = Field(index=True)
