"""The unit of work on SQLite and PostgreSQL: lazy sessions, set-based rows, rollback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlmodel import Field, SQLModel

from aifactory.contracts.example.v1 import WidgetRegistered
from aifactory.store.events import NewEvent
from aifactory.store.store import Store
from aifactory.store.tables import InboxRecord, OutboxRecord


class LedgerRow(SQLModel, table=True):
    """Test table written with ``insert_rows``."""

    __tablename__ = "test_store_ledger"

    entry_id: str = Field(primary_key=True)
    amount: int


class Boom(Exception):
    """Raised inside a unit of work to force a rollback."""


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A store with every table created."""
    db = Store(database_url, source="/aifactory/test")
    await db.create_all()
    yield db
    await db.dispose()


async def _count(store: Store, model: type[SQLModel]) -> int:
    async with store.session() as session:
        return int((await session.exec(select(func.count()).select_from(model))).one()[0])  # type: ignore[call-overload]


async def test_insert_rows_commit_with_outbox_and_inbox(store: Store) -> None:
    """Rows queued with insert_rows, an emitted event and an inbox mark commit together."""
    async with store.unit_of_work() as uow:
        uow.insert_rows(LedgerRow, [{"entry_id": "a", "amount": 1}, {"entry_id": "b", "amount": 2}])
        uow.emit(NewEvent(WidgetRegistered(widget_id="w", tenant="acme", size=1), tenant="acme"))
        uow.mark_processed("test-consumer", "evt-1")
    assert await _count(store, LedgerRow) == 2
    assert await _count(store, OutboxRecord) == 1
    async with store.unit_of_work() as uow:
        assert await uow.processed("test-consumer", ["evt-1", "evt-2"]) == {"evt-1"}


async def test_failure_rolls_back_everything_queued(store: Store) -> None:
    """An exception inside the block discards queued rows, events and inbox marks."""

    async def failing_work() -> None:
        async with store.unit_of_work() as uow:
            uow.insert_rows(LedgerRow, [{"entry_id": "x", "amount": 9}])
            uow.emit(
                NewEvent(WidgetRegistered(widget_id="w", tenant="acme", size=1), tenant="acme")
            )
            uow.mark_processed("test-consumer", "evt-9")
            raise Boom

    with pytest.raises(Boom):
        await failing_work()
    assert await _count(store, LedgerRow) == 0
    assert await _count(store, OutboxRecord) == 0
    assert await _count(store, InboxRecord) == 0


async def test_unused_unit_of_work_opens_no_session(store: Store) -> None:
    """A unit of work that never touches the database never creates a session."""
    async with store.unit_of_work() as uow:
        pass
    assert uow._session is None


async def test_claim_returns_only_new_ids_and_is_undone_by_rollback(store: Store) -> None:
    """Claiming inbox ids returns those not claimed before; a rolled-back claim is released."""
    async with store.unit_of_work() as uow:
        assert await uow.claim("c1", ["a", "b"]) == {"a", "b"}

    async def claim_then_fail() -> None:
        async with store.unit_of_work() as uow:
            assert await uow.claim("c1", ["b", "c"]) == {"c"}
            raise Boom

    with pytest.raises(Boom):
        await claim_then_fail()
    async with store.unit_of_work() as uow:
        assert await uow.claim("c1", ["a", "c", "d"]) == {"c", "d"}
        assert await uow.claim("c2", ["a"]) == {"a"}, "inboxes of different consumers are separate"
