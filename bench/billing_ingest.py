"""Billing ingest benchmark: the billing service's metering consumer against a raw pull consumer.

N job lifecycle events (``job_placed``, ``job_started``, ``job_finished`` for N/3 jobs,
in groups of 100 jobs, as a busy factory publishes them) are preloaded (not measured);
each variant then consumes all N from a durable pull consumer. Throughput = N / wall
time from the start of consuming to the last batch committed. Variants:

- ``raw``: nats-py ``fetch(batch)``, ``ce-type``/``ce-id`` header check, a prebuilt
  msgspec ``Decoder`` per type, ``msg.ack()`` per message. No database: the ceiling.
- ``billing``: the billing service's consumer exactly as the service wires it: the
  kit's batch consumer without its own inbox (``app.USE_KIT_INBOX``: the fact tables,
  keyed by event id, are the inbox; exactly once), ``BillingHandlers.ingest`` as the
  batch handler (new facts stored, jobs re-derived, ledger entries appended, one
  ``UsageRecorded`` per entry written to the outbox), one transaction per batch, and
  the outbox relay publishing those events to JetStream concurrently.
- ``billing-quiet``: the same with ``AIFACTORY_BILLING_PUBLISH_USAGE=false``: the
  ledger only, no ``UsageRecorded`` events (no outbox rows, no relay work).

After the run the ledger is checked: exactly one record per job, none twice.

Run: ``uv run python bench/billing_ingest.py [--events N] [--database sqlite|URL]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from _harness import (
    Clock,
    Result,
    cancel,
    check_targets,
    database,
    fresh_bus,
    header,
    nats_server,
    parse_args,
    print_results,
    progress,
    until,
    variants,
)
from sqlalchemy import func, select

from aifactory.billing.app import JOB_LIFECYCLE, USE_KIT_INBOX
from aifactory.billing.facts import JOB_EVENTS
from aifactory.billing.handlers import BillingHandlers
from aifactory.billing.tables import LedgerRow
from aifactory.bus.connection import Bus
from aifactory.contracts.jobs.v1 import JobFinished, JobPlaced, JobStarted, NodeAllocation
from aifactory.contracts.registry import spec_of
from aifactory.store.events import NewEvent
from aifactory.store.store import Store

KNOWN = ("raw", "billing", "billing-quiet")
DEFAULT_VARIANTS = "raw:1024,billing:1024,billing-quiet:1024"  # the service default batch
T0 = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
GROUP = 100


def lifecycle(jobs: int) -> list[NewEvent]:
    """Placed, started and finished events of ``jobs`` jobs, 100 jobs at a time."""
    events: list[NewEvent] = []
    for first in range(0, jobs, GROUP):
        group = range(first, min(first + GROUP, jobs))
        for n in group:
            start = T0 + dt.timedelta(seconds=n * 7)
            events.append(
                NewEvent(
                    JobPlaced(
                        job_id=f"j{n}", tenant=f"t{n % 20}", attempt=1, model="GB200",
                        site_id="fra1", priority="standard",
                        allocations=[NodeAllocation(node_id=f"n{n % 500}", rack_id="r1",
                                                    accelerator_indices=[0, 1, 2, 3])],
                        racks_spanned=1, domains_spanned=1, placed_at=start,
                    ),
                    tenant=f"t{n % 20}",
                )
            )  # fmt: skip
        for n in group:
            start = T0 + dt.timedelta(seconds=n * 7 + 5)
            events.append(NewEvent(JobStarted(job_id=f"j{n}", tenant=f"t{n % 20}", attempt=1,
                                              started_at=start), tenant=f"t{n % 20}"))  # fmt: skip
        for n in group:
            end = T0 + dt.timedelta(seconds=n * 7 + 3600)
            events.append(NewEvent(JobFinished(job_id=f"j{n}", tenant=f"t{n % 20}", attempt=1,
                                               finished_at=end), tenant=f"t{n % 20}"))  # fmt: skip
    return events


async def preload(bus: Bus, jobs: int) -> int:
    """Publish the lifecycle events (pipelined, not measured); the event count."""
    events = lifecycle(jobs)
    for start in range(0, len(events), 4000):
        futures = []
        for event in events[start : start + 4000]:
            message = bus.publisher.build(event)
            futures.append(
                await bus.js.publish_async(
                    bus.namespace.subject(message.subject), message.body, headers=message.headers
                )
            )
        await asyncio.gather(*futures)
    print(f"   preloaded {len(events)} lifecycle events of {jobs} jobs")
    return len(events)


async def run_billing(name: str, batch: int, *, nats_url: str, db_url: str, jobs: int) -> Result:
    """Measure the billing consumer (inbox, ledger, outbox, relay running)."""
    async with fresh_bus(nats_url, name, [JOB_LIFECYCLE]) as bus:
        store = Store(db_url, source="/aifactory/billing")
        await store.create_all()
        events = await preload(bus, jobs)
        publish = name == "billing"
        handlers = BillingHandlers(credit_window_s=1800, publish_usage=publish)
        relay = bus.relay(store)
        done = asyncio.Event()
        consumer: Any = None

        def committed() -> None:
            relay.wake()
            if consumer.stats.applied >= events:
                done.set()

        consumer = bus.consumer(
            JOB_LIFECYCLE,
            store,
            batch_handler=handlers.ingest,
            accept=JOB_EVENTS,
            batch_size=batch,
            use_inbox=USE_KIT_INBOX,
            after_commit=committed,
        )
        clock = Clock()
        tasks: list[asyncio.Task[Any]] = []
        try:
            with clock.running(f"{name}:{batch}"):
                if publish:
                    tasks.append(asyncio.create_task(relay.run()))
                tasks.append(asyncio.create_task(consumer.run()))
                async with progress(f"{name}:{batch}", events, lambda: consumer.stats.applied):
                    await until(done, tasks, timeout=120 + events / 200)
        finally:
            await cancel(*tasks)
        async with store.session() as session:
            records = (
                await session.exec(select(func.count()).select_from(LedgerRow))  # type: ignore[call-overload]
            ).one()[0]
            keys = (
                await session.exec(
                    select(func.count(func.distinct(LedgerRow.record_key)))  # type: ignore[call-overload]
                )
            ).one()[0]
        await store.dispose()
        if records != jobs or keys != jobs:
            raise SystemExit(
                f"check failed: {records} ledger entries for {jobs} jobs ({keys} keys)"
            )
        return Result(name, batch, events, clock, baseline="raw",
                      note=f"{records} ledger records, exactly once")  # fmt: skip


async def run_raw(name: str, batch: int, *, nats_url: str, db_url: str, jobs: int) -> Result:
    """Measure a plain nats-py fetch / decode / ack loop over the same events."""
    del db_url
    decoders = {spec_of(t).ce_type: msgspec.json.Decoder(t) for t in JOB_EVENTS}
    async with fresh_bus(nats_url, name, [JOB_LIFECYCLE]) as bus:
        events = await preload(bus, jobs)
        psub = await bus.js.pull_subscribe_bind(
            durable=bus.namespace.stream(JOB_LIFECYCLE.durable),
            stream=bus.namespace.stream(JOB_LIFECYCLE.stream),
        )
        done = asyncio.Event()
        applied = [0]

        async def consume() -> None:
            while True:
                try:
                    msgs = await psub.fetch(batch, timeout=1.0)
                except TimeoutError:
                    continue
                for msg in msgs:
                    headers = msg.headers or {}
                    decoder = decoders.get(headers.get("ce-type", ""))
                    if decoder is None or "ce-id" not in headers:
                        raise RuntimeError("unexpected message in the bench stream")
                    decoder.decode(msg.data)
                applied[0] += len(msgs)
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
        return Result(name, batch, events, clock, note="no database")


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], default_events=30_000, variants=DEFAULT_VARIANTS)
    plan = variants(args.variants, KNOWN)
    header("billing ingest: job lifecycle -> facts -> ledger (+ outbox), exactly once", args)
    jobs = max(1, args.events // 3)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="aifactory-bench-db-") as tmp:
        async with nats_server(args.nats_url) as nats_url:
            for name, batch in plan:
                print(f"-- {name} batch {batch}")
                async with database(args.database, f"{name}-{batch}", Path(tmp)) as db_url:
                    run = run_raw if name == "raw" else run_billing
                    result = await run(name, batch, nats_url=nats_url, db_url=db_url, jobs=jobs)
                results.append(result)
                print(f"   {name}:{batch}: {result.rate:,.0f} events/s ({result.seconds:.2f}s)")
    print_results("billing ingest results (events/s = N / (first fetch .. last commit))", results)
    print("   target: billing >= 20,000 events/s per process")
    check_targets_billing(results)


def check_targets_billing(results: list[Result]) -> None:
    """The harness' target check, for the ``billing`` variant."""
    renamed = [
        Result("kit-" + r.variant if r.variant.startswith("billing") else r.variant, r.batch,
               r.events, r.clock,
               baseline=r.baseline, note=r.note)
        for r in results
    ]  # fmt: skip
    check_targets(renamed, rate=20_000, ratio=None)


if __name__ == "__main__":
    asyncio.run(main())
