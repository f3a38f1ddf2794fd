"""Fixtures for bus-kit tests: a widget store and a connected bus in a test namespace."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from sqlalchemy import select
from sqlmodel import Field, SQLModel

from aifactory.bus.connection import Bus
from aifactory.bus.consumer import EventConsumer
from aifactory.bus.settings import BusSettings
from aifactory.bus.topology import ConsumerSpec
from aifactory.contracts.envelope import Envelope
from aifactory.contracts.example.v1 import WidgetRegistered
from aifactory.store.store import Store
from aifactory.store.uow import UnitOfWork


class WidgetRow(SQLModel, table=True):
    """Test state: how many times each widget's registration was applied."""

    __tablename__ = "test_widgets"

    widget_id: str = Field(primary_key=True)
    size: int
    applied: int = 0


WIDGETS = ConsumerSpec(
    stream="FACTORY_EXAMPLE",
    durable="widgets",
    filter_subjects=("factory.example.v1.evt.widget_registered.*",),
    max_deliver=3,
    ack_wait_s=1.0,
)


async def apply_widget(envelope: Envelope[WidgetRegistered], uow: UnitOfWork) -> None:
    """Test handler: count one application of the widget's registration."""
    data = envelope.data
    row = await uow.session.get(WidgetRow, data.widget_id)
    if row is None:
        uow.session.add(WidgetRow(widget_id=data.widget_id, size=data.size, applied=1))
    else:
        row.applied += 1
        uow.session.add(row)


async def applied_counts(store: Store) -> dict[str, int]:
    """Widget id -> number of applications, read from the database."""
    async with store.session() as session:
        rows = (await session.exec(select(WidgetRow.widget_id, WidgetRow.applied))).all()  # type: ignore[call-overload]
    return dict(rows)


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A widget service database (SQLite or PostgreSQL) with all tables."""
    db = Store(database_url, source="/aifactory/widgets")
    await db.create_all()
    yield db
    await db.dispose()


@pytest_asyncio.fixture
async def bus(bus_settings: BusSettings, nats_client: Any) -> AsyncIterator[Bus]:
    """A connected bus with the factory streams and the widgets consumer provisioned.

    ``nats_client`` is requested so the test's streams are deleted afterwards.
    """
    connected = await Bus(bus_settings, service="widgets").connect()
    await connected.provision([WIDGETS])
    yield connected
    await connected.close()


@contextlib.asynccontextmanager
async def running(consumer: EventConsumer) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``consumer`` in the background for the block."""
    ready = asyncio.Event()
    task = asyncio.create_task(consumer.run(ready=ready))
    await asyncio.wait_for(ready.wait(), 5)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, BaseException):
            await task
