"""Data key benchmark: generate / unwrap a data key over NATS, keys service vs raw nats-py.

Two responders answer the same requests with the same AES work (AES-256-GCM with
associated data over a 32-byte data key, the tenant key unwrapped once and kept in
memory), each in its own process, on one embedded nats-server:

- ``raw``: a bare nats-py queue subscription decoding the request with a prebuilt
  msgspec decoder, doing the AES work and publishing the reply. No audit, no
  database, no authorization: the ceiling of Python + nats-py on this machine.
- ``keys``: the keys service (``python -m aifactory.keys``, SQLite in a temporary
  directory): strict decode, CloudEvents headers, policy check, a hash-chained audit
  record per request, group commit, the reply sent only after the commit, and the
  audit events relayed to JetStream.

For each operation (``generate_data_key``, ``decrypt_data_key``) the client (this
process, one nats-py connection, ``--in-flight`` concurrent requests) measures the
closed-loop throughput for ``--duration`` seconds, then latency percentiles of an
open-loop load at half that throughput and at a fixed ``--rate``. Figures print as a
table with the keys/raw ratio. Run::

    uv run python bench/keys_datakey.py [--duration 5] [--in-flight 64] [--rate 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import nats
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from aifactory.bus.embedded import EmbeddedNats
from aifactory.bus.rpc import request
from aifactory.contracts.envelope import build_message
from aifactory.contracts.keys.v1 import (
    Caller,
    CreateKey,
    DataKey,
    DataKeyPlaintext,
    DecryptDataKey,
    GenerateDataKey,
    KeyDescription,
    KeyPolicy,
)

PREFIX = "bench"
CALLER = Caller(principal="tenant:acme", site="fra-1")


# ---------------------------------------------------------------- raw responder (child process)


def raw_responder(url: str) -> None:
    """A bare nats-py responder for both operations (runs in a child process)."""

    async def serve() -> None:
        nc = await nats.connect(url)
        key = AESGCM(os.urandom(32))
        aad = b"aifactory.keys.v1/data\x00acme\x00datasets\x001\x00"
        generate_decoder = msgspec.json.Decoder(GenerateDataKey)
        decrypt_decoder = msgspec.json.Decoder(DecryptDataKey)
        encoder = msgspec.json.Encoder()
        headers = {"ce-type": "reply", "content-type": "application/json"}

        async def on_generate(msg: nats.aio.msg.Msg) -> None:
            command = generate_decoder.decode(msg.data)
            data_key = os.urandom(32)
            nonce = os.urandom(12)
            wrapped = b"afk1\x00\x00\x00\x01" + nonce + key.encrypt(nonce, data_key, aad)
            reply = DataKey(
                tenant=command.tenant,
                key_id=command.key_id,
                version=1,
                plaintext=data_key,
                wrapped=wrapped,
            )
            await nc.publish(msg.reply, encoder.encode(reply), headers=headers)

        async def on_decrypt(msg: nats.aio.msg.Msg) -> None:
            command = decrypt_decoder.decode(msg.data)
            wrapped = command.wrapped
            data_key = key.decrypt(wrapped[8:20], wrapped[20:], aad)
            reply = DataKeyPlaintext(
                tenant=command.tenant, key_id=command.key_id, version=1, plaintext=data_key
            )
            await nc.publish(msg.reply, encoder.encode(reply), headers=headers)

        await nc.subscribe("raw.generate_data_key", queue="raw", cb=on_generate)
        await nc.subscribe("raw.decrypt_data_key", queue="raw", cb=on_decrypt)
        await nc.flush()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.Event().wait()

    asyncio.run(serve())


# ---------------------------------------------------------------- load generation


class Target:
    """Where one operation's requests go and what they carry."""

    def __init__(self, subject: str, command: object, reply_type: type) -> None:
        message = build_message(command, source="/bench")  # type: ignore[arg-type]
        self.subject = subject
        self.body = message.body
        self.headers = message.headers
        self.decoder = msgspec.json.Decoder(reply_type)

    def headers_for(self, n: int) -> dict[str, str]:
        """Headers with a fresh ce-id (every request is its own audited operation)."""
        return {**self.headers, "ce-id": f"{n:032x}", "Nats-Msg-Id": f"{n:032x}"}


async def closed_loop(nc: nats.NATS, target: Target, in_flight: int, duration: float) -> float:
    """Requests per second with ``in_flight`` requests always outstanding."""
    done = 0
    stop_at = time.perf_counter() + duration
    counter = iter(range(10**12))

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            response = await nc.request(
                target.subject, target.body, timeout=10, headers=target.headers_for(next(counter))
            )
            target.decoder.decode(response.data)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / (time.perf_counter() - started)


async def open_loop(nc: nats.NATS, target: Target, rate: float, duration: float) -> list[float]:
    """Latencies (seconds) of requests sent at a steady ``rate`` per second."""
    latencies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    counter = iter(range(10**12))

    async def one() -> None:
        sent = time.perf_counter()
        response = await nc.request(
            target.subject, target.body, timeout=10, headers=target.headers_for(next(counter))
        )
        target.decoder.decode(response.data)
        latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    issued = 0
    while (elapsed := time.perf_counter() - started) < duration:
        owed = int(elapsed * rate) - issued
        for _ in range(owed):
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        issued += max(owed, 0)
        await asyncio.sleep(0.0005)
    await asyncio.gather(*tasks)
    return latencies


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values`` in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# ---------------------------------------------------------------- the run


async def run(args: argparse.Namespace, url: str, workdir: Path) -> None:
    master = base64.b64encode(os.urandom(32)).decode()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIFACTORY_")}
    env.update(
        AIFACTORY_NATS_URL=url,
        AIFACTORY_SUBJECT_PREFIX=PREFIX,
        AIFACTORY_KEYS_DATABASE_URL=f"sqlite:///{workdir / 'keys.db'}",
        AIFACTORY_KEYS_MASTER_KEY=master,
        AIFACTORY_LOG_LEVEL="WARNING",
        AIFACTORY_LOG_FORMAT="json",
    )
    keys = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "aifactory.keys"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    raw = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, __file__, "--raw-responder", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert raw.stdout is not None
        raw.stdout.readline()
        nc = await nats.connect(url)
        from aifactory.bus.settings import Namespace

        ns = Namespace(PREFIX)
        policy = KeyPolicy(allowed_sites=["fra-1"])
        for _ in range(200):
            try:
                await request(
                    nc,
                    CreateKey(tenant="acme", key_id="datasets", policy=policy, caller=CALLER),
                    KeyDescription,
                    namespace=ns,
                    timeout=1,
                )
                break
            except Exception:
                await asyncio.sleep(0.1)
        generated = await request(
            nc,
            GenerateDataKey(tenant="acme", key_id="datasets", caller=CALLER),
            DataKey,
            namespace=ns,
        )
        # The raw responder has a key of its own: ask it for a data key it can unwrap.
        raw_wrapped_reply = await nc.request(
            "raw.generate_data_key",
            msgspec.json.encode(GenerateDataKey(tenant="acme", key_id="datasets", caller=CALLER)),
            timeout=5,
        )
        raw_wrapped = msgspec.json.decode(raw_wrapped_reply.data, type=DataKey).wrapped
        generate = GenerateDataKey(tenant="acme", key_id="datasets", caller=CALLER)
        operations = {
            "generate_data_key": (
                Target("raw.generate_data_key", generate, DataKey),
                Target(ns.subject("factory.keys.v1.cmd.generate_data_key"), generate, DataKey),
            ),
            "decrypt_data_key": (
                Target(
                    "raw.decrypt_data_key",
                    DecryptDataKey(
                        tenant="acme", key_id="datasets", caller=CALLER, wrapped=raw_wrapped
                    ),
                    DataKeyPlaintext,
                ),
                Target(
                    ns.subject("factory.keys.v1.cmd.decrypt_data_key"),
                    DecryptDataKey(
                        tenant="acme", key_id="datasets", caller=CALLER, wrapped=generated.wrapped
                    ),
                    DataKeyPlaintext,
                ),
            ),
        }
        print(
            f"in flight {args.in_flight}, {args.duration:.0f} s per measurement, "
            f"cpus {os.cpu_count()}"
        )
        print(
            f"{'operation':<18} {'variant':<5} {'req/s':>8} {'ratio':>6} {'cpu us/req':>10} "
            f"{'p50/p99 @half ms':>17}  {'p50/p99 @rate ms':>17}"
        )
        pids = {"raw": raw.pid, "keys": keys.pid}
        for name, (raw_target, keys_target) in operations.items():
            results = {}
            for variant, target in (("raw", raw_target), ("keys", keys_target)):
                await closed_loop(nc, target, args.in_flight, 1.0)  # warm-up
                cpu_before = cpu_seconds(pids[variant])
                throughput = await closed_loop(nc, target, args.in_flight, args.duration)
                cpu_per_request = (cpu_seconds(pids[variant]) - cpu_before) / (
                    throughput * args.duration
                )
                half = await open_loop(nc, target, throughput / 2, args.duration)
                fixed = await open_loop(nc, target, args.rate, args.duration)
                results[variant] = throughput
                ratio = throughput / results["raw"]
                print(
                    f"{name:<18} {variant:<5} {throughput:>8.0f} {ratio:>6.2f} "
                    f"{cpu_per_request * 1e6:>10.0f} "
                    f"{percentile(half, 0.5):>7.2f}/{percentile(half, 0.99):<7.2f}  "
                    f"{percentile(fixed, 0.5):>7.2f}/{percentile(fixed, 0.99):<7.2f}"
                )
        print(f"open-loop rates: half of each variant's throughput, and a fixed {args.rate:.0f}/s")
        await nc.drain()
    finally:
        for process in (keys, raw):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--rate", type=float, default=5000.0, help="fixed open-loop rate, req/s")
    parser.add_argument("--nats-url", default=None)
    parser.add_argument("--raw-responder", metavar="URL", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_responder:
        raw_responder(args.raw_responder)
        return
    with tempfile.TemporaryDirectory(prefix="keys-bench-") as tmp:
        workdir = Path(tmp)
        if args.nats_url:
            asyncio.run(run(args, args.nats_url, workdir))
            return
        with EmbeddedNats(store_dir=workdir / "nats") as server:
            asyncio.run(run(args, server.url, workdir))


if __name__ == "__main__":
    main()
