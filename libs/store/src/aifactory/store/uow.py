"""The unit of work: one transaction holding state changes, outbox rows and inbox marks.

Handlers write their state through ``uow.session`` and hand back the events they
cause; the bus kit (or the handler) calls ``uow.emit`` for each, which queues an
outbox row built with full CloudEvents headers. ``processed`` and
``mark_processed`` give the inbox: the ids of consumed events, committed in the same
transaction as their effects. Rows are written with set-based ``INSERT``s at flush,
which keeps the per-event cost low on the hot path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping

import msgspec
from sqlalchemy import Table, insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from aifactory.contracts.base import Contract
from aifactory.contracts.cloudevents import CloudEvent, new_traceparent, utcnow
from aifactory.contracts.envelope import OutgoingMessage, build_message
from aifactory.store.events import NewEvent as NewEvent  # noqa: PLC0414 - re-exported for handlers
from aifactory.store.tables import InboxRecord, OutboxRecord

_headers_encoder = msgspec.json.Encoder()
_IN_CHUNK = 500  # ids per IN (...) query; well below every backend's parameter limit


class UnitOfWork:
    """One database transaction of a service (created by ``Store.unit_of_work``).

    The session is opened on first use: a handler that never touches the database
    (and emits nothing) costs no transaction at all.
    """

    def __init__(self, sessions: Callable[[], AsyncSession], *, source: str, dialect: str) -> None:
        self._sessions = sessions
        self._session: AsyncSession | None = None
        self.source = source
        self.dialect = dialect
        self._outbox: list[dict[str, object]] = []
        self._inbox: list[dict[str, object]] = []
        self._rows: dict[Table, list[Mapping[str, object]]] = {}
        self.emitted: list[OutgoingMessage] = []
        self.trace_id: str | None = None
        """The trace that emitted events continue when no ``caused_by`` is given."""

    def emit(
        self, event: NewEvent | Contract, *, caused_by: CloudEvent | None = None
    ) -> OutgoingMessage:
        """Queue ``event`` for publication when this unit of work commits.

        ``caused_by`` (the event being handled) continues its trace and, unless the
        new event names its own tenant, its tenant.
        """
        new = event if isinstance(event, NewEvent) else NewEvent(event)
        tenant = new.tenant if new.tenant is not None else (caused_by.tenant if caused_by else None)
        trace = caused_by.trace_id if caused_by else self.trace_id
        message = build_message(
            new.data,
            source=self.source,
            tenant=tenant,
            scope=new.scope,
            subject=new.subject,
            traceparent=new_traceparent(trace),
        )
        now = message.event.time or utcnow()
        self._outbox.append(
            {
                "event_id": message.event.id,
                "subject": message.subject,
                "headers": _headers_encoder.encode(message.headers).decode(),
                "body": message.body,
                "created_at": now,
                "published_at": None,
            }
        )
        self.emitted.append(message)
        return message

    def emit_all(
        self, events: Iterable[NewEvent | Contract], *, caused_by: CloudEvent | None = None
    ) -> None:
        """``emit`` each of ``events``."""
        for event in events:
            self.emit(event, caused_by=caused_by)

    async def processed(self, consumer: str, event_ids: Collection[str]) -> set[str]:
        """Which of ``event_ids`` this consumer has already applied (committed)."""
        found: set[str] = set()
        ids = list(event_ids)
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            rows = await self.session.exec(
                select(col(InboxRecord.event_id)).where(
                    col(InboxRecord.consumer) == consumer, col(InboxRecord.event_id).in_(chunk)
                )
            )
            found.update(rows.all())
        return found

    def insert_rows(self, model: type[SQLModel], rows: Iterable[Mapping[str, object]]) -> None:
        """Queue plain rows for ``model``'s table, inserted with one ``executemany`` at flush.

        The fast way for a handler to append state: no ORM object per row and no
        statement per event (each statement costs thread hops on aiosqlite).
        """
        table = model.__table__  # type: ignore[attr-defined]
        self._rows.setdefault(table, []).extend(rows)

    async def claim(self, consumer: str, event_ids: Collection[str]) -> set[str]:
        """Record ``event_ids`` as applied by ``consumer``; return those not recorded before.

        One ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` on the inbox's key, so the
        lookup is an index probe whatever the table's size or statistics. The claims
        are part of this transaction: a rollback releases them.
        """
        if not event_ids:
            return set()
        now = utcnow()
        rows = [{"event_id": e, "consumer": consumer, "processed_at": now} for e in event_ids]
        dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        statement = (
            dialect_insert(InboxRecord)
            .on_conflict_do_nothing()
            .returning(col(InboxRecord.event_id))
        )
        conn = await self._connection()
        result = await conn.execute(statement, rows)
        return set(result.scalars().all())

    def mark_processed(self, consumer: str, event_id: str, at: dt.datetime | None = None) -> None:
        """Record that ``consumer`` applied ``event_id`` (commits with this unit of work)."""
        self._inbox.append(
            {"consumer": consumer, "event_id": event_id, "processed_at": at or utcnow()}
        )

    @property
    def session(self) -> AsyncSession:
        """The transaction's session (its transaction begins on first use)."""
        if self._session is None:
            self._session = self._sessions()
        return self._session

    async def _connection(self) -> AsyncConnection:
        return await self.session.connection()

    async def commit(self) -> None:
        """Write queued rows and commit; nothing at all if the database was not used."""
        await self.flush()
        if self._session is not None:
            await self._session.commit()

    async def rollback(self) -> None:
        """Discard everything of this unit of work."""
        self._outbox.clear()
        self._inbox.clear()
        self._rows.clear()
        if self._session is not None:
            await self._session.rollback()

    async def close(self) -> None:
        """Release the session and its connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def flush(self) -> None:
        """Write queued rows, outbox rows and inbox marks (called before commit)."""
        if not self._outbox and not self._inbox and not self._rows:
            return
        await self.session.flush()
        conn = await self._connection()
        for table, rows in self._rows.items():
            await conn.execute(insert(table), list(rows))
        self._rows.clear()
        if self._inbox:
            await conn.execute(insert(InboxRecord), self._inbox)
            self._inbox = []
        if self._outbox:
            await conn.execute(insert(OutboxRecord), self._outbox)
            self._outbox = []
