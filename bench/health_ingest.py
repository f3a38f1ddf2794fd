"""Health telemetry ingest: messages/s per process, verdict latency under load, RSS.

Starts its own nats-server (``EmbeddedNats`` in a temporary directory) and measures,
with ``--nodes`` simulated nodes (10,000 by default) whose telemetry is published by
a separate publisher process (pre-encoded ``NodeTelemetry`` bodies, 8 GPUs each):

1. **raw baseline**: a raw nats-py subscriber (in this process) that only counts the
   messages of a burst of ``--burst`` messages published as fast as possible;
2. **health capacity**: the health service (``python -m aifactory.health``, its own
   process, SQLite, the nodes pre-registered) takes the same burst; throughput is
   messages decoded and judged per second, read from its ``ListNodeHealth`` ingest
   counters; the ratio to the raw subscriber is printed;
3. **verdict latency under load**: the nodes report at ``--rate`` messages/s (10,000
   nodes at 5 Hz = 50,000/s) for ``--seconds``; halfway, one node reports Xid 79; the
   time from that publish to the ``NodeHealthChanged`` event is the verdict latency;
4. the health process's resident memory (VmRSS) with every node tracked.

    uv run python bench/health_ingest.py [--nodes 10000] [--burst 300000] [--rate 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import nats

from aifactory.bus.embedded import EmbeddedNats
from aifactory.bus.rpc import ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.contracts.health.v1 import (
    GpuSample,
    ListNodeHealth,
    NodeHealthChanged,
    NodeHealthPage,
    NodeTelemetry,
    XidEvent,
)
from aifactory.contracts.registry import spec_of
from aifactory.health.tables import HealthNodeRow
from aifactory.store.store import Store

PREFIX = "bench"
NAMESPACE = Namespace(PREFIX)
SUBJECT = NAMESPACE.subject(spec_of(NodeTelemetry).subject())


def node_id(i: int) -> str:
    return f"gpu-{i:05d}"


def body(i: int, *, xid: bool = False) -> bytes:
    now = dt.datetime.now(dt.UTC)
    return msgspec.json.encode(
        NodeTelemetry(
            node_id=node_id(i),
            session="bench",
            seq=1,
            sent_at=now,
            interval_ms=200,
            source="simulated",
            gpus=[
                GpuSample(
                    index=g,
                    temperature_c=55 + g,
                    power_w=650.0,
                    utilization_pct=97,
                    memory_used_mib=81920,
                    ecc_sbe_volatile=0,
                    ecc_dbe_volatile=0,
                    retired_pages_dbe=0,
                    remap_pending=False,
                    remap_failure=False,
                    nvlink_errors=0,
                )
                for g in range(8)
            ],
            xids=[XidEvent(gpu=7, xid=79, at=now)] if xid else [],
        )
    )


# ---------------------------------------------------------------- publisher process
def publisher(url: str, nodes: int, total: int, rate: float, xid_at: float | None) -> None:
    """Publish ``total`` messages round-robin over the nodes (paced to ``rate``/s if > 0)."""

    async def run() -> None:
        nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
        bodies = [body(i) for i in range(nodes)]
        xid_body = body(0, xid=True)
        print(f"START {time.time():.6f}", flush=True)
        started = time.perf_counter()
        sent = 0
        batch = 1000
        xid_sent = False
        while sent < total:
            for k in range(batch):
                await nc.publish(SUBJECT, bodies[(sent + k) % nodes])
            sent += batch
            elapsed = time.perf_counter() - started
            if xid_at is not None and not xid_sent and elapsed >= xid_at:
                await nc.publish(SUBJECT, xid_body)
                await nc.flush()
                print(f"XID {time.time():.6f}", flush=True)
                xid_sent = True
            if rate > 0:
                ahead = sent / rate - elapsed
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await nc.flush(timeout=30)
        elapsed = time.perf_counter() - started
        print(f"SENT {sent} {elapsed:.3f}", flush=True)
        await nc.close()

    asyncio.run(run())


def start_publisher(
    url: str, nodes: int, total: int, rate: float, xid_at: float | None
) -> subprocess.Popen[str]:
    here = str(Path(__file__).parent)
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import health_ingest as h; "
        f"h.publisher({url!r}, {nodes}, {total}, {rate}, {xid_at!r})"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


# ---------------------------------------------------------------- measurements
async def raw_baseline(url: str, nodes: int, burst: int) -> float:
    nc = await nats.connect(url)
    count = 0
    first = last = 0.0
    done = asyncio.Event()

    async def on_msg(_msg: object) -> None:
        nonlocal count, first, last
        count += 1
        if count == 1:
            first = time.perf_counter()
        last = time.perf_counter()
        if count >= burst:
            done.set()

    await nc.subscribe(
        SUBJECT, cb=on_msg, pending_msgs_limit=4_000_000, pending_bytes_limit=4 << 30
    )
    await nc.flush()
    pub = start_publisher(url, nodes, burst, 0, None)
    assert pub.stdout is not None
    try:
        await asyncio.wait_for(done.wait(), timeout=120)
    except TimeoutError:
        print(f"  raw subscriber got {count}/{burst} (slow consumer drops)")
    pub.wait(timeout=60)
    await nc.close()
    return count / (last - first) if last > first else 0.0


async def seed(database: Path, nodes: int) -> None:
    store = Store(f"sqlite:///{database}")
    await store.create_all()
    now = dt.datetime.now(dt.UTC)
    async with store.session() as session:
        for i in range(nodes):
            session.add(
                HealthNodeRow(
                    node_id=node_id(i),
                    site_id="fra1",
                    rack_id=f"r{i // 72:03d}",
                    accelerators=8,
                    interval_s=10.0,
                    updated_at=now,
                )
            )
        await session.commit()
    await store.dispose()


async def health_page(nc: nats.NATS) -> NodeHealthPage | None:
    try:
        return await request(
            nc, ListNodeHealth(limit=1), NodeHealthPage, namespace=NAMESPACE, timeout=5
        )
    except ServiceUnavailable:
        return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=50_000)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    print(
        f"health ingest bench: {args.nodes} nodes x 8 GPUs, {len(body(0))} B per message, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="health-bench-") as tmp,
        EmbeddedNats(store_dir=Path(tmp) / "nats") as server,
    ):
        raw = await raw_baseline(server.url, args.nodes, args.burst)
        print(f"raw nats-py subscriber (count only):   {raw:>10,.0f} msg/s")
        database = Path(tmp) / "health.db"
        await seed(database, args.nodes)
        env = {
            **os.environ,
            "AIFACTORY_NATS_URL": server.url,
            "AIFACTORY_SUBJECT_PREFIX": PREFIX,
            "AIFACTORY_HEALTH_DATABASE_URL": f"sqlite:///{database}",
            "AIFACTORY_LOG_LEVEL": os.environ.get("BENCH_HEALTH_LOG_LEVEL", "WARNING"),
            "AIFACTORY_LOG_FORMAT": "json",
            # Phases are seconds apart; a long silence allowance keeps the bench from
            # measuring 10,000 "unreachable" verdicts between them instead of ingest.
            "AIFACTORY_HEALTH_MISSED_INTERVALS": "200",
        }
        health = subprocess.Popen([sys.executable, "-m", "aifactory.health"], env=env)  # noqa: ASYNC220 - started once, not awaited
        nc = await nats.connect(server.url)
        try:
            while (page := await health_page(nc)) is None:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.2)
            verdicts: list[float] = []

            async def on_verdict(msg: nats.aio.msg.Msg) -> None:
                try:
                    data = msgspec.json.decode(msg.data, type=NodeHealthChanged)
                except msgspec.DecodeError as error:
                    print(f"  undecodable verdict event: {error}")
                    return
                if data.node_id == node_id(0) and data.verdict == "failed":
                    verdicts.append(time.time())

            await nc.subscribe(
                NAMESPACE.subject(spec_of(NodeHealthChanged).subject_filter), cb=on_verdict
            )
            total = int(args.rate * args.seconds)
            pub = start_publisher(server.url, args.nodes, total, args.rate, args.seconds / 2)
            xid_time = None
            assert pub.stdout is not None
            while line := await asyncio.to_thread(pub.stdout.readline):
                if line.startswith("XID"):
                    xid_time = float(line.split()[1])
                if line.startswith("SENT"):
                    _, sent, took = line.split()
                    print(
                        f"paced load: {int(sent):,} messages in {float(took):.2f}s = "
                        f"{int(sent) / float(took):,.0f} msg/s offered"
                    )
            pub.wait(timeout=60)
            deadline = time.time() + 15
            while not verdicts and time.time() < deadline:  # noqa: ASYNC110 - bounded wait
                await asyncio.sleep(0.05)
            page = await health_page(nc)
            assert page is not None
            if xid_time is not None and verdicts:
                latency = verdicts[0] - xid_time
                print(f"verdict latency under load (Xid 79 -> NodeHealthChanged): {latency:.3f}s")
            else:
                failed = await request(
                    nc, ListNodeHealth(verdict="failed"), NodeHealthPage, namespace=NAMESPACE
                )
                stream = await nc.jetstream().stream_info(NAMESPACE.stream("FACTORY_HEALTH"))
                print(
                    "verdict latency under load: no verdict event seen within 15 s "
                    f"(xid sent: {xid_time is not None}; failed nodes: "
                    f"{[n.node_id for n in failed.nodes][:5]}; "
                    f"events in FACTORY_HEALTH: {stream.state.messages})"
                )
            print(
                f"health RSS with {args.nodes} nodes tracked: {rss_mib(health.pid):.0f} MiB "
                f"(overflow {page.ingest.overflow}, unknown {page.ingest.unknown_node})"
            )
            page = await health_page(nc)
            assert page is not None
            applied_before, overflow_before = page.ingest.applied, page.ingest.overflow
            pub = start_publisher(server.url, args.nodes, args.burst, 0, None)
            assert pub.stdout is not None
            first_line = await asyncio.to_thread(pub.stdout.readline)
            started = float(first_line.split()[1])
            last_change = time.time()
            seen = applied_before
            while time.time() - last_change < 2.0 and seen - applied_before < args.burst:
                page = await health_page(nc)
                assert page is not None
                if page.ingest.applied != seen:
                    seen = page.ingest.applied
                    last_change = time.time()
                await asyncio.sleep(0.05)
            pub.wait(timeout=60)
            applied = seen - applied_before
            overflow = page.ingest.overflow - overflow_before
            rate = applied / max(last_change - started, 1e-6)
            print(
                f"health service ingest (decode+judge):  {rate:>10,.0f} msg/s  "
                f"({applied:,} of {args.burst:,} applied in {last_change - started:.2f}s, "
                f"overflow {overflow}, "
                f"garbage {page.ingest.garbage}) = {rate / raw:.2f}x raw"
            )

            print(f"health RSS after the burst: {rss_mib(health.pid):.0f} MiB")
        finally:
            await nc.close()
            health.terminate()
            health.wait(timeout=30)


if __name__ == "__main__":
    multiprocessing.freeze_support()
    asyncio.run(main())
