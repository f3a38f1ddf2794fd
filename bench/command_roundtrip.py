"""Command round trips over core NATS: the kit's responder vs raw nats-py vs FastStream.

Starts a private nats-server, then for each responder sends ``--requests`` commands
(``RegisterWidget``, full CloudEvents headers) with ``--in-flight`` outstanding at
once from one client connection in the same process, and prints requests/s, p50 and
p99 latency, and each responder's ratio to the raw one measured in the same run.

- raw: a nats-py queue subscription that decodes with a prebuilt msgspec decoder and
  replies (the floor of what Python can do here);
- faststream: a ``NatsBroker`` subscriber (msgspec serializer, no access log) doing
  the same;
- kit: ``CommandEndpoints`` (decode, authorise hook, unit of work, typed reply).

    uv run python bench/command_roundtrip.py [--requests 20000] [--in-flight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import nats
from fast_depends.msgspec import MsgSpecSerializer
from faststream import Response
from faststream.nats import NatsBroker, NatsMessage
from nats.aio.client import Client
from nats.aio.msg import Msg

from aifactory.bus.embedded import EmbeddedNats
from aifactory.bus.rpc import CommandEndpoints, RequestContext
from aifactory.bus.settings import Namespace
from aifactory.contracts.envelope import build_message
from aifactory.contracts.example.v1 import RegisterWidget, WidgetRegistration
from aifactory.store.store import Store
from aifactory.store.uow import UnitOfWork

ENCODER = msgspec.json.Encoder()
DECODER = msgspec.json.Decoder(RegisterWidget)
REPLY_HEADERS = {"ce-type": "io.aifactory.example.register_widget.v1.reply"}


async def register(
    command: RegisterWidget, _uow: UnitOfWork, _ctx: RequestContext
) -> WidgetRegistration:
    return WidgetRegistration(widget_id=command.widget_id, created=True)


async def drive(
    client: Client, subject: str, requests: int, in_flight: int
) -> tuple[float, list[float]]:
    message = build_message(RegisterWidget(widget_id="w1", tenant="acme", size=1), source="/bench")
    latencies: list[float] = []
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            started = time.perf_counter()
            await client.request(subject, message.body, timeout=10, headers=message.headers)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    return requests / (time.perf_counter() - started), latencies


async def raw_responder(url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    nc = await nats.connect(url)

    async def on_request(msg: Msg) -> None:
        command = DECODER.decode(msg.data)
        reply = WidgetRegistration(widget_id=command.widget_id, created=True)
        await nc.publish(msg.reply, ENCODER.encode(reply), headers=REPLY_HEADERS)

    await nc.subscribe("bench.raw", queue="bench", cb=on_request)
    await nc.flush()
    return "bench.raw", nc.close


async def faststream_responder(url: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    broker = NatsBroker(url, serializer=MsgSpecSerializer(), logger=None)

    async def raw_body(msg: NatsMessage) -> bytes:
        return bytes(msg.body)

    @broker.subscriber("bench.faststream", queue="bench", decoder=raw_body)
    async def handle(body: bytes) -> Response:
        command = DECODER.decode(body)
        reply = WidgetRegistration(widget_id=command.widget_id, created=True)
        return Response(ENCODER.encode(reply), headers=REPLY_HEADERS)

    await broker.start()
    await broker.connection.flush()
    return "bench.faststream", broker.stop


async def kit_responder(url: str, directory: Path) -> tuple[str, Callable[[], Awaitable[None]]]:
    nc = await nats.connect(url)
    store = Store(f"sqlite+aiosqlite:///{directory / 'kit.db'}")
    await store.create_all()
    endpoints = CommandEndpoints(nc, store, service="bench", namespace=Namespace())
    await endpoints.register(RegisterWidget, register)
    await nc.flush()

    async def close() -> None:
        await endpoints.close()
        await nc.close()
        await store.dispose()

    return "factory.example.v1.cmd.register_widget", close


def _row(name: str, rate: float, latencies: list[float], raw_rate: float) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    return f"{name:<11} {rate:>10,.0f} {p50:>9.2f} {p99:>9.2f} {rate / raw_rate:>8.2f}x"


async def main(requests: int, in_flight: int) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="aifactory-bench-") as tmp,
        EmbeddedNats(store_dir=Path(tmp) / "nats") as server,
    ):
        client = await nats.connect(server.url)
        results: dict[str, tuple[float, list[float]]] = {}
        for name, start in (
            ("raw", lambda: raw_responder(server.url)),
            ("faststream", lambda: faststream_responder(server.url)),
            ("kit", lambda: kit_responder(server.url, Path(tmp))),
        ):
            subject, stop = await start()
            await drive(client, subject, min(1000, requests), in_flight)  # warm-up
            print(f"{name}: {requests} requests, {in_flight} in flight ...", flush=True)
            results[name] = await drive(client, subject, requests, in_flight)
            await stop()
        await client.close()
    raw_rate = results["raw"][0]
    print()
    print(f"{'responder':<11} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'vs raw':>9}")
    for name, (rate, latencies) in results.items():
        print(_row(name, rate, latencies, raw_rate))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.in_flight))
