"""Event hop benchmark: pull, decode, inbox check, state write, outbox, relay, ack.

One "hop" is what a stateful service does with an event: pull it from a durable
JetStream consumer, read its CloudEvents headers and decode the msgspec contract,
skip it if the inbox says it was applied, write one state row, queue one derived
event in the outbox - all in one transaction per batch - acknowledge after commit,
and have the outbox relay publish the derived event (``publish_async``, batched)
and mark it published after JetStream acknowledged it.

N ``WidgetRegistered`` events for tenant ``in`` are preloaded (not measured); each
variant then runs until all N derived events (tenant ``out``) are acknowledged by
JetStream. Throughput = N / wall time from the start of consuming to the last
relay round's acknowledgement. Variants:

- ``raw``: no kit. nats-py ``fetch`` loop, a prebuilt msgspec ``Decoder``, the DB
  driver directly (aiosqlite, or asyncpg for PostgreSQL) on the same schema, one
  transaction per batch (``BEGIN IMMEDIATE`` on SQLite), acks after commit, and a
  relay task reading outbox rows, ``publish_async`` + waiting for every ack, then
  marking them - the same durability as the kit.
- ``raw-core``: the same loop on SQLAlchemy Core (``AsyncConnection`` of the same
  kind of ``AsyncEngine`` the kit uses), to separate SQLAlchemy's cost from the kit's.
- ``kit-orm``: ``Bus.consumer(spec, store, handlers={WidgetRegistered: handler})``
  whose handler does ``uow.session.add(row)`` and returns one derived event, plus
  ``Bus.relay(store).run()`` woken by ``after_commit=relay.wake``.
- ``kit-core``: the same with the row queued by ``uow.insert_rows`` (one executemany per batch).

Run: ``uv run python bench/event_hop.py [--events N] [--database sqlite|URL]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import aiosqlite
import asyncpg
import msgspec
from _harness import (
    OUT_TENANT,
    WIDGET_SUBJECT,
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
    subject_count,
    until,
    variants,
)
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlmodel import Field, SQLModel

from aifactory.bus.connection import Bus
from aifactory.contracts.envelope import Envelope
from aifactory.contracts.example.v1 import WidgetRegistered
from aifactory.contracts.registry import spec_of
from aifactory.store.store import Store
from aifactory.store.tables import InboxRecord, OutboxRecord
from aifactory.store.uow import NewEvent, UnitOfWork

KNOWN = ("raw", "raw-core", "kit-orm", "kit-core")
DEFAULT_VARIANTS = "raw:256,raw-core:256,kit-orm:256,kit-orm:512,kit-core:256"
RELAY_BATCH = 1000  # the kit relay's default batch size
IDLE_S = 0.5  # the kit relay's default idle poll interval
SOURCE = "/aifactory/bench"


class HopWidget(SQLModel, table=True):
    """Bench state: one row per widget whose registration was applied."""

    __tablename__ = "bench_hop_widgets"

    widget_id: str = Field(primary_key=True, max_length=64)
    tenant: str = Field(max_length=64)
    size: int


# ---------------------------------------------------------------------- kit handlers
def _derived(data: WidgetRegistered) -> NewEvent:
    """The event a hop emits: the same widget, re-registered for tenant ``out``."""
    return NewEvent(
        WidgetRegistered(widget_id="o" + data.widget_id[1:], tenant=OUT_TENANT, size=data.size),
        tenant=OUT_TENANT,
    )


async def hop_orm(envelope: Envelope[WidgetRegistered], uow: UnitOfWork) -> list[NewEvent]:
    """Write the state row through the ORM session; return one derived event."""
    data = envelope.data
    uow.session.add(HopWidget(widget_id=data.widget_id, tenant=data.tenant, size=data.size))
    return [_derived(data)]


async def hop_core(envelope: Envelope[WidgetRegistered], uow: UnitOfWork) -> list[NewEvent]:
    """Queue the state row for one set-based INSERT per batch (``uow.insert_rows``); one event."""
    data = envelope.data
    uow.insert_rows(
        HopWidget, [{"widget_id": data.widget_id, "tenant": data.tenant, "size": data.size}]
    )
    return [_derived(data)]


async def count_rows(url: str) -> int:
    """How many state rows the variant wrote."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(HopWidget))).scalar_one()
            )  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def run_kit(
    name: str, batch: int, handler: Any, *, nats_url: str, db_url: str, events: int
) -> Result:
    """Measure the kit's consumer + relay on ``events`` preloaded events."""
    spec = consumer_spec("hop")
    async with fresh_bus(nats_url, name, [spec]) as bus:
        store = Store(db_url, source=SOURCE)
        await store.create_all()
        await preload(bus, events)
        done = asyncio.Event()
        relay = bus.relay(store)
        relay.on_published = lambda _n: done.set() if relay.published_total >= events else None
        consumer = bus.consumer(
            spec,
            store,
            handlers={WidgetRegistered: handler},
            batch_size=batch,
            after_commit=relay.wake,
        )
        clock = Clock()
        tasks: list[asyncio.Task[Any]] = []
        try:
            with clock.running(f"{name}:{batch}"):
                tasks += [asyncio.create_task(relay.run()), asyncio.create_task(consumer.run())]
                async with progress(
                    f"{name}:{batch}",
                    events,
                    lambda: relay.published_total,
                    lambda: consumer.stats.applied,
                ):
                    await until(done, tasks, timeout=60 + events / 500)
        finally:
            await cancel(*tasks)
        await check(bus, db_url, events, store=store)
        return Result(name, batch, events, clock, baseline="raw")


async def check(bus: Bus, db_url: str, events: int, *, store: Store | None = None) -> None:
    """Fail loudly unless every derived event is in the stream once and every row written."""
    published = await subject_count(bus, f"{WIDGET_SUBJECT}.{OUT_TENANT}")
    if store is not None:
        await store.dispose()
    rows = await count_rows(db_url)
    if published != events or rows != events:
        raise SystemExit(
            f"check failed: {published} derived events, {rows} state rows, want {events}"
        )


# ---------------------------------------------------------------------- raw baseline
_decoder = msgspec.json.Decoder(WidgetRegistered)
_encoder = msgspec.json.Encoder()
_headers_decoder = msgspec.json.Decoder(dict[str, str])
_WIDGET = spec_of(WidgetRegistered)
_CE_TYPE = _WIDGET.ce_type
_OUT_SUBJECT = _WIDGET.subject(OUT_TENANT)
_DATASCHEMA = _WIDGET.schema_id


class Hop(msgspec.Struct):
    """One readable input event of a batch."""

    event_id: str
    data: WidgetRegistered
    trace_id: str


def outbox_row(hop: Hop, ce_time: str) -> tuple[str, str, bytes]:
    """(event id, headers JSON, body) of the derived event, headers as the kit writes them."""
    data = hop.data
    out_id = str(uuid.uuid4())
    traceparent = f"00-{hop.trace_id}-{secrets.token_hex(8)}-01"
    headers = {
        "ce-specversion": "1.0",
        "ce-id": out_id,
        "ce-source": SOURCE,
        "ce-type": _CE_TYPE,
        "content-type": "application/json",
        "Nats-Msg-Id": out_id,
        "ce-time": ce_time,
        "ce-dataschema": _DATASCHEMA,
        "ce-tenant": OUT_TENANT,
        "ce-traceparent": traceparent,
        "traceparent": traceparent,
    }
    body = _encoder.encode(
        WidgetRegistered(widget_id="o" + data.widget_id[1:], tenant=OUT_TENANT, size=data.size)
    )
    return out_id, _encoder.encode(headers).decode(), body


class RawDb(Protocol):
    """What the raw loop needs from a database: three statements and a relay round."""

    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]: ...
    async def processed(self, consumer: str, ids: Sequence[str]) -> set[str]: ...
    async def write(
        self,
        widgets: list[tuple[str, str, int]],
        inbox: list[tuple[str, str]],
        outbox: list[tuple[str, str, str, bytes]],
        now: dt.datetime,
    ) -> None: ...
    async def relay_round(
        self, limit: int, publish: Callable[[list[tuple[int, str, str, bytes]]], Any]
    ) -> int: ...
    async def close(self) -> None: ...


def _sqlite_time(moment: dt.datetime) -> str:
    """A datetime as SQLAlchemy's SQLite dialect stores it."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


class SqliteRaw:
    """aiosqlite, one connection for the consumer and one for the relay (as the pool does)."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def open(self) -> SqliteRaw:
        self.writer = await self._connect()
        self.relay = await self._connect()
        return self

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=10000",
            "foreign_keys=ON",
        ):
            await conn.execute(f"PRAGMA {pragma}")
        return conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        await self.writer.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            await self.writer.execute("ROLLBACK")
            raise
        await self.writer.execute("COMMIT")

    async def processed(self, consumer: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await self.writer.execute_fetchall(
                "SELECT event_id FROM aifactory_inbox WHERE consumer = ? "
                f"AND event_id IN ({','.join('?' * len(chunk))})",
                (consumer, *chunk),
            )
            found.update(row[0] for row in rows)
        return found

    async def write(
        self,
        widgets: list[tuple[str, str, int]],
        inbox: list[tuple[str, str]],
        outbox: list[tuple[str, str, str, bytes]],
        now: dt.datetime,
    ) -> None:
        stamp = _sqlite_time(now)
        await self.writer.executemany(
            "INSERT INTO bench_hop_widgets (widget_id, tenant, size) VALUES (?, ?, ?)", widgets
        )
        await self.writer.executemany(
            "INSERT INTO aifactory_inbox (consumer, event_id, processed_at) VALUES (?, ?, ?)",
            [(c, e, stamp) for c, e in inbox],
        )
        await self.writer.executemany(
            "INSERT INTO aifactory_outbox (event_id, subject, headers, body, created_at, "
            "published_at) VALUES (?, ?, ?, ?, ?, NULL)",
            [(*row, stamp) for row in outbox],
        )

    async def relay_round(
        self, limit: int, publish: Callable[[list[tuple[int, str, str, bytes]]], Any]
    ) -> int:
        # Read, publish, then mark in a second statement (as the kit does on SQLite).
        rows = await self.relay.execute_fetchall(
            "SELECT seq, subject, headers, body FROM aifactory_outbox "
            "WHERE published_at IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        )
        if not rows:
            return 0
        await publish(rows)  # type: ignore[arg-type]
        seqs = [row[0] for row in rows]
        await self.relay.execute(
            "UPDATE aifactory_outbox SET published_at = ? "
            f"WHERE seq IN ({','.join('?' * len(seqs))})",
            (_sqlite_time(dt.datetime.now(dt.UTC)), *seqs),
        )
        return len(rows)

    async def close(self) -> None:
        await self.writer.close()
        await self.relay.close()


class PostgresRaw:
    """asyncpg, one connection for the consumer and one for the relay."""

    def __init__(self, url: str) -> None:
        self.dsn = url.replace("postgresql+asyncpg://", "postgresql://")

    async def open(self) -> PostgresRaw:
        self.writer = await asyncpg.connect(self.dsn)
        self.relay = await asyncpg.connect(self.dsn)
        return self

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self.writer.transaction():
            yield

    async def processed(self, consumer: str, ids: Sequence[str]) -> set[str]:
        rows = await self.writer.fetch(
            "SELECT event_id FROM aifactory_inbox "
            "WHERE consumer = $1 AND event_id = ANY($2::text[])",
            consumer,
            list(ids),
        )
        return {row[0] for row in rows}

    async def write(
        self,
        widgets: list[tuple[str, str, int]],
        inbox: list[tuple[str, str]],
        outbox: list[tuple[str, str, str, bytes]],
        now: dt.datetime,
    ) -> None:
        stamp = now  # the columns are TIMESTAMP WITH TIME ZONE (sqlmodel's UTCDateTime)
        await self.writer.executemany(
            "INSERT INTO bench_hop_widgets (widget_id, tenant, size) VALUES ($1, $2, $3)", widgets
        )
        await self.writer.executemany(
            "INSERT INTO aifactory_inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3)",
            [(c, e, stamp) for c, e in inbox],
        )
        await self.writer.executemany(
            "INSERT INTO aifactory_outbox (event_id, subject, headers, body, created_at, "
            "published_at) VALUES ($1, $2, $3, $4, $5, NULL)",
            [(*row, stamp) for row in outbox],
        )

    async def relay_round(
        self, limit: int, publish: Callable[[list[tuple[int, str, str, bytes]]], Any]
    ) -> int:
        # Claim, publish and mark in one transaction (as the kit does on PostgreSQL).
        async with self.relay.transaction():
            rows = await self.relay.fetch(
                "SELECT seq, subject, headers, body FROM aifactory_outbox "
                "WHERE published_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                limit,
            )
            if not rows:
                return 0
            await publish(rows)
            await self.relay.execute(
                "UPDATE aifactory_outbox SET published_at = $1 WHERE seq = ANY($2::bigint[])",
                dt.datetime.now(dt.UTC),
                [row[0] for row in rows],
            )
        return len(rows)

    async def close(self) -> None:
        await self.writer.close()
        await self.relay.close()


_CORE_WIDGETS = insert(HopWidget.__table__)  # type: ignore[arg-type]
_CORE_INBOX = insert(InboxRecord.__table__)  # type: ignore[arg-type]
_CORE_OUTBOX = insert(OutboxRecord.__table__)  # type: ignore[arg-type]
_outbox_t = OutboxRecord.__table__  # type: ignore[attr-defined]
_inbox_t = InboxRecord.__table__  # type: ignore[attr-defined]


class CoreRaw:
    """SQLAlchemy Core on an ``AsyncEngine`` built like the kit's ``Store`` builds it."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> CoreRaw:
        store = Store(self.url)  # the same engine options and SQLite pragmas as the kit
        self.store = store
        self.writer_conn: AsyncConnection | None = None
        self.is_sqlite = store.is_sqlite
        return self

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self.store.engine.begin() as conn:
            self.writer_conn = conn
            yield
        self.writer_conn = None

    async def processed(self, consumer: str, ids: Sequence[str]) -> set[str]:
        assert self.writer_conn is not None
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            rows = await self.writer_conn.execute(
                select(_inbox_t.c.event_id).where(
                    _inbox_t.c.consumer == consumer,
                    _inbox_t.c.event_id.in_(ids[start : start + 500]),
                )
            )
            found.update(rows.scalars())
        return found

    async def write(
        self,
        widgets: list[tuple[str, str, int]],
        inbox: list[tuple[str, str]],
        outbox: list[tuple[str, str, str, bytes]],
        now: dt.datetime,
    ) -> None:
        conn = self.writer_conn
        assert conn is not None
        await conn.execute(
            _CORE_WIDGETS, [{"widget_id": w, "tenant": t, "size": s} for w, t, s in widgets]
        )
        await conn.execute(
            _CORE_INBOX, [{"consumer": c, "event_id": e, "processed_at": now} for c, e in inbox]
        )
        await conn.execute(
            _CORE_OUTBOX,
            [
                {
                    "event_id": e,
                    "subject": s,
                    "headers": h,
                    "body": b,
                    "created_at": now,
                    "published_at": None,
                }
                for e, s, h, b in outbox
            ],
        )

    async def relay_round(
        self, limit: int, publish: Callable[[list[tuple[int, str, str, bytes]]], Any]
    ) -> int:
        query = (
            select(_outbox_t.c.seq, _outbox_t.c.subject, _outbox_t.c.headers, _outbox_t.c.body)
            .where(_outbox_t.c.published_at.is_(None))
            .order_by(_outbox_t.c.seq)
            .limit(limit)
        )
        mark = update(_outbox_t).where(_outbox_t.c.seq.in_(bindparam("seqs", expanding=True)))
        if self.is_sqlite:
            async with self.store.engine.connect() as conn:
                async with conn.begin():
                    rows = (await conn.execute(query)).all()
                if not rows:
                    return 0
                await publish(rows)  # type: ignore[arg-type]
                async with conn.begin():
                    await conn.execute(
                        mark.values(published_at=dt.datetime.now(dt.UTC)),
                        {"seqs": [r[0] for r in rows]},
                    )
            return len(rows)
        async with self.store.engine.begin() as conn:
            rows = (await conn.execute(query.with_for_update(skip_locked=True))).all()
            if not rows:
                return 0
            await publish(rows)  # type: ignore[arg-type]
            await conn.execute(
                mark.values(published_at=dt.datetime.now(dt.UTC)),
                {"seqs": [r[0] for r in rows]},
            )
        return len(rows)

    async def close(self) -> None:
        await self.store.dispose()


def read_batch(msgs: Iterable[Any]) -> dict[str, Hop]:
    """The batch's readable events by id (the first of any repeated id)."""
    hops: dict[str, Hop] = {}
    for msg in msgs:
        headers = msg.headers
        if headers is None or headers.get("ce-type") != _CE_TYPE:
            raise RuntimeError(
                "unexpected message in the bench stream"
            )  # a service would dead-letter
        event_id = headers["ce-id"]
        if event_id not in hops:
            traceparent = headers.get("ce-traceparent") or headers.get("traceparent") or ""
            trace_id = traceparent[3:35] if len(traceparent) == 55 else secrets.token_hex(16)
            hops[event_id] = Hop(event_id, _decoder.decode(msg.data), trace_id)
    return hops


async def run_raw(
    name: str, batch: int, *, nats_url: str, db_url: str, is_sqlite: bool, events: int
) -> Result:
    """Measure the hand-written hop (same work and durability as the kit, no kit)."""
    spec = consumer_spec("hop")
    async with fresh_bus(nats_url, name, [spec]) as bus:
        # The schema is the kit's (same tables and indexes); the bus is used for setup only.
        setup = Store(db_url)
        await setup.create_all()
        await setup.dispose()
        await preload(bus, events)
        if name == "raw-core":
            db: RawDb = await CoreRaw(db_url).open()
        elif is_sqlite:
            db = await SqliteRaw(db_url.split(":///", 1)[1]).open()
        else:
            db = await PostgresRaw(db_url).open()
        js = bus.js
        prefix = bus.namespace.subject("")
        durable = bus.namespace.stream(spec.durable)
        psub = await js.pull_subscribe_bind(
            durable=durable, stream=bus.namespace.stream(spec.stream)
        )
        wake = asyncio.Event()
        done = asyncio.Event()
        counts = {"applied": 0, "published": 0}

        async def consume() -> None:
            while True:
                try:
                    msgs = await psub.fetch(batch, timeout=1.0)
                except TimeoutError:
                    continue
                hops = read_batch(msgs)
                now = dt.datetime.now(dt.UTC)
                ce_time = now.isoformat().replace("+00:00", "Z")
                async with db.transaction():
                    seen = await db.processed(durable, list(hops))
                    fresh = [h for h in hops.values() if h.event_id not in seen]
                    widgets, inbox, outbox = [], [], []
                    for hop in fresh:
                        data = hop.data
                        widgets.append((data.widget_id, data.tenant, data.size))
                        inbox.append((durable, hop.event_id))
                        out_id, headers_json, body = outbox_row(hop, ce_time)
                        outbox.append((out_id, _OUT_SUBJECT, headers_json, body))
                    await db.write(widgets, inbox, outbox, now)
                counts["applied"] += len(fresh)
                wake.set()
                for msg in msgs:
                    await msg.ack()

        async def publish(rows: list[tuple[int, str, str, bytes]]) -> None:
            futures = [
                await js.publish_async(
                    prefix + subject, body, headers=_headers_decoder.decode(hdrs)
                )
                for _seq, subject, hdrs, body in rows
            ]
            async with asyncio.timeout(10.0):
                await asyncio.gather(*futures)

        async def relay() -> None:
            while True:
                count = await db.relay_round(RELAY_BATCH, publish)
                counts["published"] += count
                if counts["published"] >= events:
                    done.set()
                if count < RELAY_BATCH:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(IDLE_S):
                            await wake.wait()
                    wake.clear()

        clock = Clock()
        tasks: list[asyncio.Task[Any]] = []
        try:
            with clock.running(f"{name}:{batch}"):
                tasks += [asyncio.create_task(relay()), asyncio.create_task(consume())]
                async with progress(
                    f"{name}:{batch}",
                    events,
                    lambda: counts["published"],
                    lambda: counts["applied"],
                ):
                    await until(done, tasks, timeout=60 + events / 500)
        finally:
            await cancel(*tasks)
            with contextlib.suppress(Exception):
                await psub.unsubscribe()
            await db.close()
        await check(bus, db_url, events)
        note = "aiosqlite" if is_sqlite else "asyncpg"
        if name == "raw-core":
            note = "SQLAlchemy Core, " + note
        return Result(
            name, batch, events, clock, baseline=None if name == "raw" else "raw", note=note
        )


# ---------------------------------------------------------------------- main
async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_events=15_000, variants=DEFAULT_VARIANTS)
    plan = variants(args.variants, KNOWN)
    header("event hop: pull, decode, inbox, state row, outbox, relay publish_async, ack", args)
    is_sqlite = args.database == "sqlite"
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="aifactory-bench-db-") as tmp:
        async with nats_server(args.nats_url) as nats_url:
            for name, batch in plan:
                print(f"-- {name} batch {batch}")
                async with database(args.database, f"{name}-{batch}", Path(tmp)) as db_url:
                    if name.startswith("raw"):
                        result = await run_raw(
                            name,
                            batch,
                            nats_url=nats_url,
                            db_url=db_url,
                            is_sqlite=is_sqlite,
                            events=args.events,
                        )
                    else:
                        handler = hop_orm if name == "kit-orm" else hop_core
                        result = await run_kit(
                            name,
                            batch,
                            handler,
                            nats_url=nats_url,
                            db_url=db_url,
                            events=args.events,
                        )
                results.append(result)
                print(f"   {name}:{batch}: {result.rate:,.0f} events/s ({result.seconds:.2f}s)")
    print_results(
        "event hop results (events/s = N / (first fetch .. last derived event acked))", results
    )
    print("   targets: kit >= 10,000 events/s per process and >= 0.7x raw")
    check_targets(results, rate=10_000, ratio=0.7)


if __name__ == "__main__":
    asyncio.run(main())
