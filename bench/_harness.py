"""Scaffolding shared by the bus-kit benchmarks: servers, databases, preloading, tables.

Each benchmark variant gets a fresh subject namespace (its own streams on the
nats-server) and a fresh database (a SQLite file in a temporary directory, or a
throwaway database on the PostgreSQL server given with ``--database``), so the
variants measured in one run do not see each other's messages or rows. The
nats-server is an ``EmbeddedNats`` in a temporary directory unless ``--nats-url``
names one; it is stopped when the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import logging
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from aifactory.bus.connection import Bus
from aifactory.bus.embedded import EmbeddedNats
from aifactory.bus.settings import BusSettings
from aifactory.bus.topology import ConsumerSpec, delete_streams, factory_streams
from aifactory.contracts.example.v1 import WidgetRegistered
from aifactory.store.events import NewEvent
from aifactory.store.settings import async_url

STREAM = "FACTORY_EXAMPLE"
WIDGET_SUBJECT = "factory.example.v1.evt.widget_registered"
IN_TENANT = "in"
OUT_TENANT = "out"


def parse_args(description: str, *, default_events: int, variants: str) -> argparse.Namespace:
    """Command-line options common to the benchmarks."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--events", type=int, default=default_events, help="events per variant")
    parser.add_argument(
        "--database",
        default="sqlite",
        help="'sqlite' (a file in a temporary directory, the default) or a PostgreSQL URL "
        "(a throwaway database is created on that server and dropped afterwards)",
    )
    parser.add_argument(
        "--nats-url", default=None, help="use this nats-server instead of starting one"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="cProfile each measured window (event-loop thread) into DIR/<variant>-<batch>.prof",
    )
    parser.add_argument(
        "--variants",
        default=variants,
        help=f"comma-separated variants to run, in order (default: {variants})",
    )
    args = parser.parse_args()
    _profile_dir[0] = Path(args.profile) if args.profile else None
    return args


def header(title: str, args: argparse.Namespace) -> None:
    """Print what is being measured, and where; silence the kit's info logs."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    backend = "sqlite (temp file)" if args.database == "sqlite" else "postgresql"
    load = os.getloadavg()[0]
    print(f"== {title}")
    print(
        f"   {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load {load:.2f}, database {backend}, "
        f"events per variant {args.events}"
    )
    if load > 0.5:
        print(
            "   warning: other processes are using the CPUs; wall-clock figures will be noisy "
            "(compare the CPU columns)"
        )


# ---------------------------------------------------------------------- servers
@contextlib.asynccontextmanager
async def nats_server(url: str | None) -> AsyncIterator[str]:
    """``url``, or the URL of a private nats-server started for the block."""
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="aifactory-bench-nats-") as tmp:
        server = EmbeddedNats(Path(tmp) / "jetstream")
        await server.start_async()
        assert server.process is not None
        _nats_pid[0] = server.process.pid
        print(f"   nats-server {server.url} (pid {server.process.pid}, store in {tmp})")
        try:
            yield server.url
        finally:
            _nats_pid[0] = None
            server.stop()


_nats_pid: list[int | None] = [None]
_profile_dir: list[Path | None] = [None]
_TICKS = os.sysconf("SC_CLK_TCK")


def _nats_cpu_s() -> float | None:
    """CPU seconds (user + system) the private nats-server has used, if it is ours."""
    pid = _nats_pid[0]
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class Clock:
    """Wall time and CPU time (this process, all threads; the nats-server) of a block."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    loop_cpu_s: float = 0.0
    nats_cpu_s: float | None = None

    @contextlib.contextmanager
    def running(self, label: str = "") -> Iterator[Clock]:
        """Measure the block (and profile it when ``--profile`` was given)."""
        profiler = cProfile.Profile() if _profile_dir[0] is not None else None
        wall, cpu, nats_cpu = time.perf_counter(), time.process_time(), _nats_cpu_s()
        loop_cpu = time.thread_time()
        if profiler is not None:
            profiler.enable()
        try:
            yield self
        finally:
            if profiler is not None:
                profiler.disable()
                assert _profile_dir[0] is not None
                _profile_dir[0].mkdir(parents=True, exist_ok=True)
                path = _profile_dir[0] / f"{label.replace(':', '-')}.prof"
                profiler.dump_stats(path)
                print(f"   profile: {path} (python -m pstats {path})")
            self.wall_s = time.perf_counter() - wall
            self.cpu_s = time.process_time() - cpu
            self.loop_cpu_s = time.thread_time() - loop_cpu
            end = _nats_cpu_s()
            self.nats_cpu_s = end - nats_cpu if end is not None and nats_cpu is not None else None


@contextlib.asynccontextmanager
async def database(spec: str, name: str, tmpdir: Path) -> AsyncIterator[str]:
    """A fresh, empty database for one variant: its async SQLAlchemy URL."""
    if spec == "sqlite":
        yield f"sqlite+aiosqlite:///{tmpdir / name}.db"
        return
    server = async_url(spec)
    admin_dsn = server.replace("postgresql+asyncpg://", "postgresql://")
    db_name = f"aifactory_bench_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{db_name}"')
    finally:
        await conn.close()
    try:
        yield f"{server.rpartition('/')[0]}/{db_name}"
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        finally:
            await conn.close()


def consumer_spec(durable: str, tenant: str = IN_TENANT) -> ConsumerSpec:
    """A durable pull consumer reading only ``tenant``'s widget events."""
    return ConsumerSpec(
        stream=STREAM,
        durable=durable,
        filter_subjects=(f"{WIDGET_SUBJECT}.{tenant}",),
        max_deliver=5,
        ack_wait_s=60.0,
    )


@contextlib.asynccontextmanager
async def fresh_bus(
    nats_url: str, label: str, consumers: Sequence[ConsumerSpec]
) -> AsyncIterator[Bus]:
    """A connected ``Bus`` in a namespace of its own, streams and consumers provisioned.

    The namespace's streams are deleted when the block ends.
    """
    prefix = f"bench_{label.replace('-', '_')}_{secrets.token_hex(3)}"
    settings = BusSettings(nats_url=nats_url, subject_prefix=prefix)
    bus = await Bus(settings, service="bench").connect()
    try:
        await bus.provision(consumers)
        yield bus
    finally:
        with contextlib.suppress(Exception):
            await delete_streams(bus.js, factory_streams(settings), bus.namespace)
        await bus.close()


async def preload(bus: Bus, count: int, tenant: str = IN_TENANT) -> None:
    """Publish ``count`` WidgetRegistered events for ``tenant`` (pipelined, not measured)."""
    started = time.perf_counter()
    publisher = bus.publisher
    window = 4000
    for start in range(0, count, window):
        futures = []
        for i in range(start, min(start + window, count)):
            event = WidgetRegistered(widget_id=f"w-{i}", tenant=tenant, size=i % 1000 + 1)
            message = publisher.build(NewEvent(event, tenant=tenant))
            futures.append(
                await bus.js.publish_async(
                    bus.namespace.subject(message.subject), message.body, headers=message.headers
                )
            )
        await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    print(f"   preloaded {count} events in {elapsed:.2f}s ({count / elapsed:,.0f}/s)")


async def subject_count(bus: Bus, subject: str) -> int:
    """How many messages the stream holds on ``subject`` (a contract subject)."""
    wire = bus.namespace.subject(subject)
    info = await bus.js.stream_info(bus.namespace.stream(STREAM), subjects_filter=wire)
    return (info.state.subjects or {}).get(wire, 0)


# ---------------------------------------------------------------------- progress
@contextlib.asynccontextmanager
async def progress(
    label: str, total: int, done: Callable[[], int], consumed: Callable[[], int] | None = None
) -> AsyncIterator[None]:
    """Print ``done()`` of ``total`` (and ``consumed()``) about once a second in the block."""

    async def report() -> None:
        started = time.perf_counter()
        while True:
            await asyncio.sleep(1.0)
            count = done()
            elapsed = time.perf_counter() - started
            also = f", consumed {consumed():>8}" if consumed is not None else ""
            print(
                f"   {label}: done {count:>8}/{total}{also} after {elapsed:4.1f}s "
                f"({count / elapsed:,.0f}/s)",
                flush=True,
            )

    task = asyncio.create_task(report())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(done: asyncio.Event, tasks: Sequence[asyncio.Task[Any]], timeout: float) -> None:
    """Wait for ``done``; raise at once if a worker task fails, or after ``timeout``."""
    waiter = asyncio.create_task(done.wait())
    try:
        finished, _ = await asyncio.wait(
            [waiter, *tasks], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        waiter.cancel()
    for task in finished:
        if task is not waiter:
            task.result()  # raises the worker's exception
            raise RuntimeError(f"worker task {task.get_name()} stopped early")
    if not finished:
        raise TimeoutError(f"not done within {timeout:.0f}s")


async def cancel(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait for them to finish."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


# ---------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class Result:
    """One measured variant."""

    variant: str
    batch: int
    events: int
    clock: Clock
    baseline: str | None = None  # the variant name this one is compared with
    note: str = ""

    @property
    def seconds(self) -> float:
        """Wall time of the measured part."""
        return self.clock.wall_s

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds


def print_results(title: str, results: Sequence[Result]) -> None:
    """A table of ``results`` with each kit variant's ratio to its raw baseline."""

    def base_of(result: Result) -> Result | None:
        same = [r for r in results if r.variant == result.baseline]
        return next((r for r in same if r.batch == result.batch), same[0] if same else None)

    print()
    print(f"== {title}")
    line = (
        f"   {'variant':<16} {'batch':>5} {'events':>7} {'wall s':>7} {'events/s':>9} "
        f"{'ratio':<21} {'py cpu':>7} {'loop':>6} {'nats cpu':>8} {'us/ev':>6} {'cpu x':>5}  note"
    )
    print(line)
    print("   " + "-" * (len(line) - 3))
    for r in results:
        base = base_of(r)
        ratio = f"{r.rate / base.rate:.2f}x {base.variant}:{base.batch}" if base else ""
        per_event = r.clock.cpu_s / r.events * 1e6
        cpu_ratio = (
            f"{base.clock.cpu_s / r.clock.cpu_s * r.events / base.events:.2f}" if base else ""
        )
        nats_cpu = r.clock.nats_cpu_s
        print(
            f"   {r.variant:<16} {r.batch:>5} {r.events:>7} {r.seconds:>7.2f} {r.rate:>9,.0f} "
            f"{ratio:<21} {r.clock.cpu_s:>7.2f} {r.clock.loop_cpu_s:>6.2f} "
            f"{'' if nats_cpu is None else f'{nats_cpu:.2f}':>8} {per_event:>6.0f} {cpu_ratio:>5}  "
            f"{r.note}"
        )
    print(
        "   ratio: events/s over the raw baseline's (same batch size, else the first raw)\n"
        "   py cpu: CPU seconds of this process (all threads); loop: of its event-loop thread;\n"
        "   nats cpu: of the nats-server; us/ev: py cpu per event; cpu x: the baseline's us/ev\n"
        "   over this one's (the throughput ratio the CPU cost predicts when CPU-bound)"
    )
    sys.stdout.flush()


def check_targets(results: Sequence[Result], *, rate: float, ratio: float | None) -> None:
    """Print, for each kit variant, whether it met the throughput (and ratio) target."""
    for r in results:
        if not r.variant.startswith("kit"):
            continue
        base = next((b for b in results if b.variant == r.baseline and b.batch == r.batch), None)
        base = base or next((b for b in results if b.variant == r.baseline), None)
        verdicts = [f"{r.rate:,.0f}/s {'meets' if r.rate >= rate else 'MISSES'} >= {rate:,.0f}/s"]
        if ratio is not None and base is not None:
            got = r.rate / base.rate
            verdicts.append(f"{got:.2f}x {'meets' if got >= ratio else 'MISSES'} >= {ratio}x")
        print(f"   {r.variant}:{r.batch}: " + "; ".join(verdicts))


def variants(spec: str, known: Sequence[str]) -> list[tuple[str, int]]:
    """Parse ``name:batch,...`` (batch defaults to 256), refusing unknown names."""
    parsed = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, batch = item.partition(":")
        if name not in known:
            raise SystemExit(f"unknown variant {name!r}; known: {', '.join(known)}")
        parsed.append((name, int(batch or 256)))
    return parsed
