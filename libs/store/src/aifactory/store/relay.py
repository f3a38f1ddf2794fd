"""The outbox relay: publishes committed events to JetStream, then marks them.

Each round reads a batch of unpublished rows in commit order, publishes them all
with ``publish_async`` (headers include ``Nats-Msg-Id = ce-id``), waits for every
acknowledgement, and only then marks the rows published, in the same transaction
that read them. A crash between publishing and marking leaves the rows unmarked:
the next round publishes them again and JetStream's duplicate window drops the
copies, so the stream holds each event once. On PostgreSQL rows are claimed with
``FOR UPDATE SKIP LOCKED`` so several relays may run.

Published rows are kept for ``retention`` (default 7 days) and then purged;
``republish_since`` marks rows unpublished again, for when a stream lost events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
import structlog
from nats.js import JetStreamContext
from sqlalchemy import delete, select, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from aifactory.contracts.cloudevents import utcnow
from aifactory.store.store import Store
from aifactory.store.tables import OutboxRecord

log = structlog.get_logger(__name__)
_headers_decoder = msgspec.json.Decoder(dict[str, str])


class RelayError(RuntimeError):
    """JetStream did not acknowledge a batch; it will be published again."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """One outbox row as the relay reads it."""

    seq: int
    event_id: str
    subject: str
    headers: str
    body: bytes


class OutboxRelay:
    """Moves committed outbox rows to JetStream."""

    def __init__(
        self,
        store: Store,
        js: JetStreamContext,
        *,
        qualify: Callable[[str], str] = lambda subject: subject,
        batch_size: int = 1000,
        idle_interval_s: float = 0.5,
        ack_timeout_s: float = 10.0,
        retention: dt.timedelta = dt.timedelta(days=7),
        on_published: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.js = js
        self.qualify = qualify
        self.batch_size = batch_size
        self.idle_interval_s = idle_interval_s
        self.ack_timeout_s = ack_timeout_s
        self.retention = retention
        self.on_published = on_published
        self._wake = asyncio.Event()
        self.published_total = 0

    def wake(self) -> None:
        """Tell the relay new rows were committed (it also polls)."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish one batch of pending events; returns how many were published."""
        async with self.store.session() as session:
            if self.store.is_sqlite:
                # SQLite has one writer: read, publish, then mark in a second short
                # transaction, so a read snapshot is never upgraded to a write while
                # the service commits (that would fail with SQLITE_BUSY_SNAPSHOT).
                async with session.begin():
                    pending = await self._read_pending(session, lock=False)
                if not pending:
                    return 0
                await self._publish(pending)
                async with session.begin():
                    await self._mark_published(session, [p.seq for p in pending])
            else:
                async with session.begin():
                    pending = await self._read_pending(session, lock=True)
                    if not pending:
                        return 0
                    await self._publish(pending)
                    await self._mark_published(session, [p.seq for p in pending])
        self.published_total += len(pending)
        if self.on_published is not None:
            self.on_published(len(pending))
        return len(pending)

    async def _read_pending(self, session: AsyncSession, *, lock: bool) -> list[PendingEvent]:
        query = (
            select(
                col(OutboxRecord.seq),
                col(OutboxRecord.event_id),
                col(OutboxRecord.subject),
                col(OutboxRecord.headers),
                col(OutboxRecord.body),
            )
            .where(col(OutboxRecord.published_at).is_(None))
            .order_by(col(OutboxRecord.seq))
            .limit(self.batch_size)
        )
        if lock:
            query = query.with_for_update(skip_locked=True)
        connection = await session.connection()
        rows = (await connection.execute(query)).all()
        return [
            PendingEvent(
                seq=int(seq or 0), event_id=event_id, subject=subject, headers=headers, body=body
            )
            for seq, event_id, subject, headers, body in rows
        ]

    async def _publish(self, pending: Sequence[PendingEvent]) -> None:
        futures = [
            await self.js.publish_async(
                self.qualify(p.subject), p.body, headers=_headers_decoder.decode(p.headers)
            )
            for p in pending
        ]
        try:
            async with asyncio.timeout(self.ack_timeout_s):
                await asyncio.gather(*futures)
        except Exception as exc:
            for future in futures:
                future.cancel()
            raise RelayError(
                f"JetStream did not acknowledge {len(pending)} events "
                f"(first {pending[0].subject}): {exc!r}; they stay in the outbox"
            ) from exc

    async def _mark_published(self, session: AsyncSession, seqs: Sequence[int]) -> None:
        await session.exec(
            update(OutboxRecord)
            .where(col(OutboxRecord.seq).in_(seqs))
            .values(published_at=utcnow())
        )

    async def drain(self) -> int:
        """Publish until the outbox is empty; returns how many were published."""
        total = 0
        while count := await self.relay_once():
            total += count
        return total

    async def run(self) -> None:
        """Relay until cancelled, purging rows older than the retention hourly."""
        next_purge = asyncio.get_running_loop().time()
        while True:
            try:
                count = await self.relay_once()
            except RelayError as exc:
                log.warning("outbox_relay_failed", error=str(exc))
                count = 0
                await asyncio.sleep(self.idle_interval_s)
            except Exception:  # a locked or unreachable database: retry, never die
                log.exception("outbox_relay_error")
                count = 0
                await asyncio.sleep(max(self.idle_interval_s, 1.0))
            if asyncio.get_running_loop().time() >= next_purge:
                await self.purge()
                next_purge += 3600
            if count < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.idle_interval_s):
                        await self._wake.wait()
                self._wake.clear()

    async def purge(self, now: dt.datetime | None = None) -> int:
        """Delete published rows older than the retention; returns how many."""
        cutoff = (now or utcnow()) - self.retention
        async with self.store.session() as session, session.begin():
            result = await session.exec(
                delete(OutboxRecord).where(
                    col(OutboxRecord.published_at).is_not(None),
                    col(OutboxRecord.published_at) < cutoff,
                )
            )
        return int(result.rowcount or 0)

    async def republish_since(self, since: dt.datetime) -> int:
        """Mark rows created at or after ``since`` unpublished, so they go out again."""
        async with self.store.session() as session, session.begin():
            result = await session.exec(
                update(OutboxRecord)
                .where(col(OutboxRecord.created_at) >= since)
                .values(published_at=None)
            )
        self.wake()
        return int(result.rowcount or 0)


__all__ = ["OutboxRelay", "PendingEvent", "RelayError"]
