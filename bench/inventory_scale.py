"""Inventory at factory scale: a 10,000-node import, and list / capacity query latency.

Starts its own nats-server (EmbeddedNats in a temporary directory) and an in-process
inventory service on a fresh SQLite file (or ``--database postgresql://...``: a
throwaway database on that server), then measures over NATS:

- the import of a generated 10,000-node description (ranges, ~140 racks, 2 sites):
  the request's round trip (parse, plan, set-based insert, 10,000 outbox rows, commit),
  and the time until all its events are on the stream; then a second, no-op import;
- p50 / p99 of ``ListNodes`` (200-node pages with and without filters, deep pages)
  and ``GetCapacity`` at 10,000 nodes, with a raw nats-py request/reply of the same
  reply size, measured in the same run, as the baseline.

Targets (issue 3): import <= 10 s; list and capacity p99 <= 20 ms.
Run: ``uv run python bench/inventory_scale.py [--nodes 10000] [--queries 300]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import nats
import structlog

from aifactory.bus.embedded import EmbeddedNats
from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.contracts.envelope import encode_body
from aifactory.contracts.inventory.v1 import (
    CapacityReport,
    GetCapacity,
    GetNode,
    ImportFactory,
    ImportSummary,
    ListNodes,
    NodeDetails,
    NodePage,
)
from aifactory.store.settings import async_url
from aifactory.testing.waiting import wait_until

MODELS = (
    ("GB200", 4, 186, 144, 960, "GB200-NVL72", 72, 18),
    ("B200", 8, 180, 112, 2048, "HGX-B200", 8, 80),
    ("H200", 8, 141, 96, 2048, "HGX-H200", 8, 80),
    ("Trainium3", 16, 144, 192, 2048, "Trn3-UltraServer", 64, 80),
)


def description(total: int) -> str:
    """A factory of ``total`` nodes over two sites, one rack entry and one node range per rack."""
    sites = "sites:\n  - {id: fra1, jurisdiction: EU/DE}\n  - {id: iad1, jurisdiction: US/VA}\n"
    racks, nodes, dedications = ["racks:"], ["nodes:"], ["dedications:"]
    made, rack_no = 0, 0
    while made < total:
        model, count, mem, cores, ram, kind, domain, per_rack = MODELS[rack_no % len(MODELS)]
        site = "fra1" if rack_no % 2 == 0 else "iad1"
        rack = f"{site}-r{rack_no:03d}"
        size = min(per_rack, total - made)
        racks.append(
            f"  - {{id: {rack}, site: {site}, kind: {kind}, nvlink_domain_size: {domain}}}"
        )
        nodes.append(
            f"  - {{id: 'n{rack_no:03d}-[001-{size:03d}]', site: {site}, rack: {rack},"
            f" model: {model}, accelerator_count: {count}, accelerator_memory_gib: {mem},"
            f" cpu_cores: {cores}, ram_gib: {ram}, labels: {{pool: p{rack_no % 3}}}}}"
        )
        if rack_no % 10 == 0:
            dedications.append(f"  - {{rack: {rack}, tenant: tenant-{rack_no % 4}}}")
        made += size
        rack_no += 1
    return "\n".join([sites, *racks, *nodes, *dedications]) + "\n"


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile (0..1) of samples, nearest rank."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def line(name: str, samples: list[float], baseline: list[float] | None = None) -> str:
    """One result line in milliseconds."""
    p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
    text = f"{name:<34} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   max {max(samples) * 1000:7.2f} ms"
    if baseline:
        text += f"   (p99 x{p99 / (percentile(baseline, 0.99) * 1000):.1f} raw)"
    return text


async def raw_baseline(url: str, reply_size: int, queries: int) -> list[float]:
    """nats-py request/reply with a fixed reply of ``reply_size`` bytes: the transport floor."""
    nc = await nats.connect(url)
    payload = b"x" * reply_size
    subject = f"bench.raw.{uuid.uuid4().hex}"

    async def echo(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(payload)

    sub = await nc.subscribe(subject, queue="raw", cb=echo)
    samples = []
    for _ in range(queries):
        started = time.perf_counter()
        await nc.request(subject, b"{}", timeout=5)
        samples.append(time.perf_counter() - started)
    await sub.unsubscribe()
    await nc.close()
    return samples


async def wait_for_service(nc: nats.aio.client.Client, ns: Namespace) -> None:
    """Until the inventory process answers (a not_found reply counts)."""
    for _ in range(300):
        try:
            await request(nc, GetNode(node_id="probe"), NodeDetails, namespace=ns, timeout=1)
        except ServiceUnavailable:
            await asyncio.sleep(0.1)
            continue
        except CommandFailed:
            return
    raise RuntimeError("the inventory process did not answer within 30 s")


async def run(args: argparse.Namespace) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.basicConfig(level=logging.WARNING)
    text = description(args.nodes)
    with (
        tempfile.TemporaryDirectory(prefix="inv-bench-") as tmp,
        EmbeddedNats(store_dir=Path(tmp) / "nats") as server,
    ):
        pg_name = None
        if args.database == "sqlite":
            url = f"sqlite:///{tmp}/inventory.db"
        else:
            pg_name = f"inv_bench_{uuid.uuid4().hex[:8]}"
            admin = args.database.replace("postgresql+asyncpg://", "postgresql://")
            conn = await asyncpg.connect(admin)
            await conn.execute(f'CREATE DATABASE "{pg_name}"')
            await conn.close()
            url = async_url(admin.rsplit("/", 1)[0] + f"/{pg_name}")
        bus = BusSettings(nats_url=server.url, subject_prefix=f"b{uuid.uuid4().hex[:6]}")
        ns = bus.namespace
        nc = await nats.connect(server.url)
        # The service runs as its own process, as in production: the benchmark's
        # client load does not share its event loop.
        service = subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [sys.executable, "-m", "aifactory.inventory"],
            env={
                **os.environ,
                "AIFACTORY_NATS_URL": server.url,
                "AIFACTORY_SUBJECT_PREFIX": bus.subject_prefix,
                "AIFACTORY_INVENTORY_DATABASE_URL": url,
                "AIFACTORY_LOG_LEVEL": "WARNING",
            },
        )
        try:
            await wait_for_service(nc, ns)
            print(
                f"inventory_scale: {args.nodes} nodes, description {len(text) / 1024:.1f} KiB, "
                f"database {'sqlite' if pg_name is None else 'postgresql'}, "
                f"python {platform.python_version()}, {os.cpu_count()} cpus"
            )
            started = time.perf_counter()
            summary = await request(
                nc,
                ImportFactory(description_yaml=text, actor="bench"),
                ImportSummary,
                namespace=ns,
                timeout=120,
            )
            replied = time.perf_counter() - started
            js = nc.jetstream()
            stream = ns.stream("FACTORY_INVENTORY")
            await wait_until(
                lambda: js.stream_info(stream),
                lambda info: info.state.messages >= summary.events,
                timeout=120,
                what="the import's events on the stream",
            )
            on_stream = time.perf_counter() - started
            print(
                f"import: {summary.nodes_created} nodes, {summary.racks_created} racks, "
                f"{summary.events} events; reply after {replied:.2f} s, all events on the "
                f"stream after {on_stream:.2f} s (target <= 10 s)"
            )
            started = time.perf_counter()
            again = await request(
                nc,
                ImportFactory(description_yaml=text, actor="bench"),
                ImportSummary,
                namespace=ns,
                timeout=120,
            )
            print(
                f"re-import (no-op): {again.events} events, {time.perf_counter() - started:.2f} s"
            )

            rng = random.Random(7)
            list_samples: dict[str, list[float]] = {
                "list first page (200)": [],
                "list filtered (site+model+state)": [],
                "list deep page (after n090)": [],
                "capacity (all sites x models)": [],
            }
            reply_sizes = []
            for _ in range(args.queries):
                for name, query, reply in (
                    ("list first page (200)", ListNodes(limit=200), NodePage),
                    (
                        "list filtered (site+model+state)",
                        ListNodes(
                            site_id=rng.choice(["fra1", "iad1"]),
                            model=rng.choice(["GB200", "B200", "H200", "Trainium3"]),
                            state="available",
                            limit=200,
                        ),
                        NodePage,
                    ),
                    (
                        "list deep page (after n090)",
                        ListNodes(limit=200, after=f"n{rng.randint(80, 120):03d}-001"),
                        NodePage,
                    ),
                    ("capacity (all sites x models)", GetCapacity(), CapacityReport),
                ):
                    t0 = time.perf_counter()
                    result = await request(nc, query, reply, namespace=ns)  # type: ignore[type-var]
                    list_samples[name].append(time.perf_counter() - t0)
                    if name == "list first page (200)":
                        reply_sizes.append(len(encode_body(result)))
            size = int(statistics.mean(reply_sizes))
            baseline = await raw_baseline(server.url, size, args.queries)
            print(line(f"raw nats request ({size / 1024:.0f} KiB reply)", baseline))
            for name, samples in list_samples.items():
                print(line(name, samples, baseline))
        finally:
            await nc.close()
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=30)
            if pg_name is not None:
                conn = await asyncpg.connect(
                    args.database.replace("postgresql+asyncpg://", "postgresql://")
                )
                await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
                await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300, help="queries of each kind")
    parser.add_argument("--database", default="sqlite", help="'sqlite' or a PostgreSQL URL")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
