"""Acceptance: ``kill -9`` of the billing process mid-ingest, then a restart, gives identical totals."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import ServiceUnavailable
from aifactory.bus.settings import Namespace
from aifactory.contracts.billing.v1 import Account, Invoice, PreviewInvoice, SetAccount
from aifactory.testing.waiting import wait_until

from ..scenario import PERIOD_END, PERIOD_START, Script, at, november
from .test_invoice import configure, matches_hand

pytestmark = pytest.mark.integration
BULK_JOBS = 1500


class BillingProcess:
    """``python -m aifactory.billing`` against the test NATS and database."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the process."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "aifactory.billing"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


@pytest.fixture
def billing_process(
    nats_url: str, namespace: Namespace, database_url: str, nats_client: Client
) -> Iterator[BillingProcess]:
    """A billing process (small batches, so a kill lands between transactions; quick redelivery); stopped after."""
    process = BillingProcess(
        {
            **os.environ,
            "AIFACTORY_NATS_URL": nats_url,
            "AIFACTORY_SUBJECT_PREFIX": namespace.prefix,
            "AIFACTORY_BILLING_DATABASE_URL": database_url,
            "AIFACTORY_BILLING_BATCH_SIZE": "32",
            "AIFACTORY_BILLING_ACK_WAIT": "2",
            "AIFACTORY_LOG_FORMAT": "json",
            "AIFACTORY_LOG_LEVEL": "WARNING",
        }
    )
    try:
        yield process
    finally:
        process.stop()


def bulk_history() -> Script:
    """``BULK_JOBS`` one-accelerator, one-hour standard GB200 jobs of tenant ``bulk``."""
    script = Script()
    for n in range(BULK_JOBS):
        start = at(2 + n % 12, n % 20, n % 60)
        script.run(f"b{n}", start, start.replace(hour=start.hour + 1), [(f"bn{n % 40}", 1)],
                   tenant="bulk")  # fmt: skip
    return script


async def test_kill_9_mid_ingest_then_restart_gives_identical_totals(
    billing_process: BillingProcess, producer, ask, nats_client: Client, namespace: Namespace
) -> None:
    """The process is killed with SIGKILL while applying batches; after a restart every total is the hand-computed one, each job counted once."""
    billing_process.start()

    async def configured() -> bool:
        try:
            await configure(ask)
            await ask(SetAccount(tenant="bulk", currency="EUR", actor="t"), Account)
        except ServiceUnavailable:
            return False
        return True

    await wait_until(configured, timeout=60, interval=0.2, what="billing process")
    messages = producer.build(november()) + producer.build(bulk_history())
    js = nats_client.jetstream()
    futures = [
        await js.publish_async(namespace.subject(m.subject), m.body, headers=m.headers)
        for m in messages
    ]
    await asyncio.gather(*futures)
    stream, durable = namespace.stream("FACTORY_JOBS"), namespace.stream("billing-jobs")

    async def progress() -> tuple[int, int]:
        info = await js.consumer_info(stream, durable)
        return info.ack_floor.stream_seq or 0, info.num_pending + info.num_ack_pending

    acked, left = await wait_until(
        progress, lambda p: p[0] > 0, timeout=60, interval=0.02, what="ingest started"
    )
    billing_process.kill()
    killed_mid_ingest = left > 0
    billing_process.start()

    async def bulk() -> Invoice:
        try:
            return await ask(
                PreviewInvoice(tenant="bulk", period_start=PERIOD_START, period_end=PERIOD_END),
                Invoice,
            )
        except ServiceUnavailable:
            return Invoice(invoice_id="none", tenant="bulk", version=0, status="draft",
                           period_start=PERIOD_START, period_end=PERIOD_END, currency="XXX",
                           lines=[], subtotal=Decimal(0), credits=Decimal(0), total=Decimal(0),
                           unpriced_records=0, computed_at=PERIOD_START)  # fmt: skip

    expected = Decimal("4.00") * BULK_JOBS
    invoice = await wait_until(bulk, lambda i: i.total == expected, timeout=90, what="bulk total")
    assert [(ln.kind, ln.records, ln.quantity) for ln in invoice.lines] == [
        ("usage", BULK_JOBS, Decimal(BULK_JOBS).quantize(Decimal("0.000001")))
    ]

    async def acme() -> Invoice:
        return await ask(
            PreviewInvoice(tenant="acme", period_start=PERIOD_START, period_end=PERIOD_END),
            Invoice,
        )

    await wait_until(acme, matches_hand, timeout=60, what="acme invoice")
    assert killed_mid_ingest, f"the kill came after the ingest ended (acked {acked})"
    assert billing_process.stop() == 0
