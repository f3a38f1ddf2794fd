"""End to end over NATS: committed placements per second, and submit -> placed latency.

Starts its own nats-server (EmbeddedNats in a temporary directory) and the scheduling
service in-process (SQLite in the same directory, key custody off), feeds it a factory
through inventory's events (``--nodes`` B200 nodes x 8), then:

1. throughput: publishes ``--jobs`` ``job_submitted`` events (1-accelerator jobs of four
   tenants) as fast as JetStream takes them and counts ``job_placed`` events as they
   arrive on the stream (published by the outbox relay after the commit, so durable):
   committed placements per second from the first submission to the last placement;
2. a raw baseline in the same run: a bare nats-py pull consumer that reads the same
   number of messages from a stream and publishes one JetStream event per message
   (no decode, no database) - the ratio says what the scheduler's work costs;
3. latency: submissions paced at ``--rate`` per second for ``--seconds``, each timed
   from its publication to its ``job_placed`` event: p50 / p99 / max.

    uv run python bench/scheduling_e2e.py [--nodes 2000] [--jobs 10000] [--rate 1000]
"""

# Report lines and the literal request body are printed / kept whole for readability.
# ruff: noqa: E501

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import statistics
import tempfile
import time
from pathlib import Path

import nats
import structlog
from nats.js.api import ConsumerConfig, StreamConfig

from aifactory.bus.embedded import EmbeddedNats
from aifactory.bus.publisher import EventPublisher
from aifactory.bus.rpc import request
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.contracts.envelope import read_message
from aifactory.contracts.inventory.v1 import Node, NodeRegistered, RackRegistered, SiteRegistered
from aifactory.contracts.jobs.v1 import JobPlaced, JobSpec, JobSubmitted, SetQuota, TenantQuota
from aifactory.scheduling.app import SchedulingService, build_service
from aifactory.scheduling.config import SchedulingSettings
from aifactory.store.events import NewEvent
from aifactory.testing.waiting import wait_until

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
TENANTS = ("acme", "globex", "initech", "umbrella")


def factory(nodes: int) -> list[NewEvent]:
    events = [
        NewEvent(SiteRegistered(site_id="fra1", jurisdiction="EU/DE", actor="bench"), scope="fra1")
    ]
    events.extend(
        NewEvent(
            RackRegistered(
                rack_id=f"r{r:04d}", site_id="fra1", kind="HGX", nvlink_domain_size=8, actor="bench"
            ),
            scope="fra1",
        )
        for r in range((nodes + 15) // 16)
    )
    for n in range(nodes):
        node = Node(
            node_id=f"n{n:05d}",
            site_id="fra1",
            rack_id=f"r{n // 16:04d}",
            model="B200",
            accelerator_count=8,
            accelerator_memory_gib=180,
            cpu_cores=112,
            ram_gib=2048,
            state="available",
            state_changed_at=NOW,
            registered_at=NOW,
            updated_at=NOW,
        )
        events.append(NewEvent(NodeRegistered(node=node, actor="bench"), scope="fra1"))
    return events


def submission(n: int, prefix: str) -> NewEvent:
    tenant = TENANTS[n % len(TENANTS)]
    spec = JobSpec(
        tenant=tenant,
        client_job_id=f"{prefix}-{n}",
        name="bench",
        models=["B200"],
        accelerators=1,
        accelerators_per_node=1,
        expected_runtime_s=3600,
    )
    return NewEvent(JobSubmitted(job=spec), tenant=tenant)


async def _count(service: SchedulingService) -> int:
    return len(service.scheduler.engine.index.nodes)


async def raw_baseline(url: str, count: int) -> float:
    """Read ``count`` messages with a pull consumer, publish one event per message."""
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=8000)
    await js.add_stream(StreamConfig(name="RAWIN", subjects=["rawin.>"]))
    await js.add_stream(StreamConfig(name="RAWOUT", subjects=["rawout.>"]))
    body = b'{"job": {"tenant": "acme", "client_job_id": "x", "name": "bench", "models": ["B200"], "accelerators": 1, "accelerators_per_node": 1}}'
    futures = [await js.publish_async(f"rawin.{i % 4}", body) for i in range(count)]
    await asyncio.gather(*futures)
    sub = await js.pull_subscribe(
        "rawin.>", durable="raw", stream="RAWIN", config=ConsumerConfig(max_ack_pending=20_000)
    )
    started = time.perf_counter()
    done = 0
    while done < count:
        msgs = await sub.fetch(256, timeout=5)
        acks = [await js.publish_async("rawout.placed", m.data) for m in msgs]
        await asyncio.gather(*acks)
        for m in msgs:
            await m.ack()
        done += len(msgs)
    elapsed = time.perf_counter() - started
    await nc.close()
    return count / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.basicConfig(level=logging.WARNING)

    with (
        tempfile.TemporaryDirectory(prefix="sched-bench-") as tmp,
        EmbeddedNats(store_dir=Path(tmp) / "nats") as server,
    ):
        ns = Namespace("bench")
        bus = BusSettings(nats_url=server.url, subject_prefix=ns.prefix)
        settings = SchedulingSettings(
            bus=bus, database_url=f"sqlite:///{tmp}/scheduling.db", key_custody="off"
        )
        service = build_service(settings)
        await service.start()
        nc = await nats.connect(server.url)
        feed = EventPublisher(
            nc.jetstream(publish_async_max_pending=8000), source="/bench", namespace=ns
        )
        placed_at: dict[str, float] = {}
        done = asyncio.Event()
        wanted = [0]

        async def on_placed(msg: nats.aio.msg.Msg) -> None:
            data = read_message(msg.headers, msg.data).data
            assert isinstance(data, JobPlaced)
            placed_at[data.job_id] = time.perf_counter()
            if len(placed_at) >= wanted[0]:
                done.set()

        await nc.subscribe(ns.subject("factory.jobs.v1.evt.job_placed.*"), cb=on_placed)
        await feed.publish_many(factory(args.nodes), timeout=120)
        await wait_until(
            lambda: _count(service), lambda n: n >= args.nodes, timeout=120, what="capacity view"
        )
        for tenant in TENANTS:
            await request(
                nc,
                SetQuota(tenant=tenant, model="*", accelerators=10**6, actor="bench"),
                TenantQuota,
                namespace=ns,
            )
        print(
            f"factory: {args.nodes} nodes x 8 B200 fed through inventory events; SQLite; one process for service and load"
        )

        # 1. throughput
        wanted[0] = args.jobs
        batch = [submission(n, "t") for n in range(args.jobs)]
        started = time.perf_counter()
        await feed.publish_many(batch, timeout=300)
        published = time.perf_counter() - started
        await asyncio.wait_for(done.wait(), timeout=600)
        elapsed = max(placed_at.values()) - started
        rate = args.jobs / elapsed
        print(
            f"throughput: {args.jobs} submissions -> {len(placed_at)} committed placements in {elapsed:.2f} s "
            f"= {rate:,.0f} placements/s (publishing took {published:.2f} s)"
        )

        # 3. latency at a steady rate
        placed_at.clear()
        done.clear()
        total = int(args.rate * args.seconds)
        wanted[0] = total
        sent_at: dict[str, float] = {}
        tick = 0.01
        per_tick = max(1, int(args.rate * tick))
        from aifactory.scheduling.domain import job_id_for

        start = time.perf_counter()
        n = 0
        while n < total:
            due = start + (n // per_tick) * tick
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            events = [submission(i, "l") for i in range(n, min(n + per_tick, total))]
            now = time.perf_counter()
            for i, _event in zip(range(n, n + len(events)), events, strict=True):
                sent_at[job_id_for(TENANTS[i % len(TENANTS)], f"l-{i}")] = now
            await feed.publish_many(events)
            n += len(events)
        await asyncio.wait_for(done.wait(), timeout=600)
        latencies = sorted((placed_at[j] - sent_at[j]) * 1000 for j in sent_at if j in placed_at)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(
            f"latency at {args.rate}/s for {args.seconds:.0f} s ({len(latencies)} jobs): "
            f"p50 {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
        )
        await nc.close()
        await service.stop()

        # 2. raw baseline (same server)
        raw = await raw_baseline(server.url, args.jobs)
        print(
            f"raw baseline: pull + publish one event per message, no decode / database: {raw:,.0f} msgs/s"
        )
        print(
            f"ratio: scheduler / raw = {rate / raw:.2f}   (targets: >= 2,000 placements/s; p99 <= 50 ms at 1,000/s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
