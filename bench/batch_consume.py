"""Batch consume benchmark: the kit's batch-handler consumer against a raw fetch loop.

N ``WidgetRegistered`` events are preloaded (not measured); each variant then
consumes all N from a durable pull consumer, acknowledging each after its batch is
done. Throughput = N / wall time from the start of consuming to the last batch
applied (its acks are sent right after). Variants:

- ``raw``: nats-py ``fetch(batch)``, ``ce-type``/``ce-id`` header check, a prebuilt
  msgspec ``Decoder``, ``msg.ack()`` per message. No database.
- ``kit``: ``Bus.consumer(spec, store, batch_handler=count, accept=[WidgetRegistered],
  use_inbox=False)``; the handler only counts. The unit of work opens and commits
  but touches no table.
- ``kit-inbox``: the same with ``use_inbox=True`` (one inbox query and one inbox
  ``INSERT`` per batch, one transaction).
- ``raw-insert``: ``raw`` plus one ``executemany`` INSERT of the batch's rows in one
  transaction, acks after commit (aiosqlite, or asyncpg for PostgreSQL).
- ``kit-insert``: the kit with a batch handler doing one Core ``executemany`` INSERT
  on ``uow.session.connection()`` (``use_inbox=False``).
- ``kit-insert-inbox``: the same with the inbox on.

Run: ``uv run python bench/batch_consume.py [--events N] [--database sqlite|URL]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import msgspec
from _harness import (
    Clock,
    Result,
    cancel,
    check_targets,
    consumer_spec,
    database,
    fresh_bus,
    header,
    nats_server,
    parse_args,
    preload,
    print_results,
    progress,
    until,
    variants,
)
from sqlalchemy import insert
from sqlmodel import Field, SQLModel

from aifactory.contracts.envelope import Envelope
from aifactory.contracts.example.v1 import WidgetRegistered
from aifactory.contracts.registry import spec_of
from aifactory.store.store import Store
from aifactory.store.uow import UnitOfWork

KNOWN = ("raw", "kit", "kit-inbox", "raw-insert", "kit-insert", "kit-insert-inbox")
DEFAULT_VARIANTS = (
    "raw:256,kit:256,kit-inbox:256,raw-insert:256,kit-insert:256,kit-insert-inbox:256"
)
BASELINE = {
    "kit": "raw",
    "kit-inbox": "raw",
    "raw-insert": "raw",
    "kit-insert": "raw-insert",
    "kit-insert-inbox": "raw-insert",
}


class BatchWidget(SQLModel, table=True):
    """Bench state for the insert variants: one row per consumed widget event."""

    __tablename__ = "bench_batch_widgets"

    widget_id: str = Field(primary_key=True, max_length=64)
    tenant: str = Field(max_length=64)
    size: int


_INSERT = insert(BatchWidget.__table__)  # type: ignore[arg-type]
_CE_TYPE = spec_of(WidgetRegistered).ce_type
_decoder = msgspec.json.Decoder(WidgetRegistered)


# ---------------------------------------------------------------------- kit
async def run_kit(name: str, batch: int, *, nats_url: str, db_url: str, events: int) -> Result:
    """Measure ``Bus.consumer(..., batch_handler=...)`` over ``events`` preloaded events."""
    spec = consumer_spec("batch")
    inserting = name.startswith("kit-insert")
    async with fresh_bus(nats_url, name, [spec]) as bus:
        store = Store(db_url, source="/aifactory/bench")
        await store.create_all()
        await preload(bus, events)
        done = asyncio.Event()
        seen = [0]

        async def count(envelopes: Sequence[Envelope[WidgetRegistered]], _uow: UnitOfWork) -> None:
            seen[0] += len(envelopes)

        async def insert_rows(
            envelopes: Sequence[Envelope[WidgetRegistered]], uow: UnitOfWork
        ) -> None:
            conn = await uow.session.connection()
            await conn.execute(
                _INSERT,
                [
                    {"widget_id": e.data.widget_id, "tenant": e.data.tenant, "size": e.data.size}
                    for e in envelopes
                ],
            )
            seen[0] += len(envelopes)

        consumer: Any = None

        def committed() -> None:
            if consumer.stats.applied >= events:
                done.set()

        consumer = bus.consumer(
            spec,
            store,
            batch_handler=insert_rows if inserting else count,
            accept=[WidgetRegistered],
            batch_size=batch,
            use_inbox=name.endswith("-inbox"),
            after_commit=committed,
        )
        clock = Clock()
        tasks: list[asyncio.Task[Any]] = []
        try:
            with clock.running(f"{name}:{batch}"):
                tasks.append(asyncio.create_task(consumer.run()))
                async with progress(f"{name}:{batch}", events, lambda: consumer.stats.applied):
                    await until(done, tasks, timeout=60 + events / 1000)
        finally:
            await cancel(*tasks)
            await store.dispose()
        if seen[0] != events:
            raise SystemExit(f"check failed: the handler saw {seen[0]} events, want {events}")
        note = "inbox on" if name.endswith("-inbox") else "inbox off"
        return Result(name, batch, events, clock, baseline=BASELINE[name], note=note)


# ---------------------------------------------------------------------- raw
class RawInsert:
    """One INSERT ... executemany per batch in one transaction, through the DB driver."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")

    async def open(self) -> RawInsert:
        if self.is_sqlite:
            self.lite = await aiosqlite.connect(self.url.split(":///", 1)[1], isolation_level=None)
            for pragma in (
                "journal_mode=WAL",
                "synchronous=NORMAL",
                "busy_timeout=10000",
                "foreign_keys=ON",
            ):
                await self.lite.execute(f"PRAGMA {pragma}")
        else:
            self.pg = await asyncpg.connect(
                self.url.replace("postgresql+asyncpg://", "postgresql://")
            )
        return self

    async def write(self, rows: list[tuple[str, str, int]]) -> None:
        if self.is_sqlite:
            await self.lite.execute("BEGIN IMMEDIATE")
            try:
                await self.lite.executemany(
                    "INSERT INTO bench_batch_widgets (widget_id, tenant, size) VALUES (?, ?, ?)",
                    rows,
                )
            except BaseException:
                await self.lite.execute("ROLLBACK")
                raise
            await self.lite.execute("COMMIT")
        else:
            async with self.pg.transaction():
                await self.pg.executemany(
                    "INSERT INTO bench_batch_widgets (widget_id, tenant, size) VALUES ($1, $2, $3)",
                    rows,
                )

    async def close(self) -> None:
        if self.is_sqlite:
            await self.lite.close()
        else:
            await self.pg.close()


async def run_raw(name: str, batch: int, *, nats_url: str, db_url: str, events: int) -> Result:
    """Measure a plain nats-py fetch / decode / (insert) / ack loop."""
    spec = consumer_spec("batch")
    async with fresh_bus(nats_url, name, [spec]) as bus:
        setup = Store(db_url)
        await setup.create_all()
        await setup.dispose()
        await preload(bus, events)
        db = await RawInsert(db_url).open() if name == "raw-insert" else None
        psub = await bus.js.pull_subscribe_bind(
            durable=bus.namespace.stream(spec.durable), stream=bus.namespace.stream(spec.stream)
        )
        done = asyncio.Event()
        applied = [0]

        async def consume() -> None:
            while True:
                try:
                    msgs = await psub.fetch(batch, timeout=1.0)
                except TimeoutError:
                    continue
                rows = []
                for msg in msgs:
                    headers = msg.headers
                    if (
                        headers is None
                        or headers.get("ce-type") != _CE_TYPE
                        or "ce-id" not in headers
                    ):
                        raise RuntimeError("unexpected message in the bench stream")
                    data = _decoder.decode(msg.data)
                    rows.append((data.widget_id, data.tenant, data.size))
                if db is not None:
                    await db.write(rows)
                applied[0] += len(rows)
                if applied[0] >= events:
                    done.set()
                for msg in msgs:
                    await msg.ack()

        clock = Clock()
        tasks: list[asyncio.Task[Any]] = []
        try:
            with clock.running(f"{name}:{batch}"):
                tasks.append(asyncio.create_task(consume()))
                async with progress(f"{name}:{batch}", events, lambda: applied[0]):
                    await until(done, tasks, timeout=60 + events / 1000)
        finally:
            await cancel(*tasks)
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
            if db is not None:
                await db.close()
        note = "no database" if db is None else ("aiosqlite" if db.is_sqlite else "asyncpg")
        return Result(name, batch, events, clock, baseline=BASELINE.get(name), note=note)


# ---------------------------------------------------------------------- main
async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_events=30_000, variants=DEFAULT_VARIANTS)
    plan = variants(args.variants, KNOWN)
    header("batch consume: fetch, read CloudEvents + decode, batch handler, ack", args)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="aifactory-bench-db-") as tmp:
        async with nats_server(args.nats_url) as nats_url:
            for name, batch in plan:
                print(f"-- {name} batch {batch}")
                async with database(args.database, f"{name}-{batch}", Path(tmp)) as db_url:
                    run = run_raw if name.startswith("raw") else run_kit
                    result = await run(
                        name, batch, nats_url=nats_url, db_url=db_url, events=args.events
                    )
                results.append(result)
                print(f"   {name}:{batch}: {result.rate:,.0f} messages/s ({result.seconds:.2f}s)")
    print_results(
        "batch consume results (events/s = N / (first fetch .. last batch applied))", results
    )
    print("   target: kit >= 20,000 messages/s per process")
    check_targets(results, rate=20_000, ratio=None)


if __name__ == "__main__":
    asyncio.run(main())
