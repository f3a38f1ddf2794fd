"""Bad input over real NATS: dead letters with the reason, typed refusals; the service keeps running."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed
from aifactory.bus.settings import Namespace
from aifactory.contracts.billing.v1 import (
    GetInvoice,
    Invoice,
    IssueInvoice,
    PreviewInvoice,
    RateView,
    SetRate,
)
from aifactory.contracts.dlq import DeadLetter
from aifactory.contracts.envelope import OutgoingMessage, read_message
from aifactory.testing.waiting import wait_until

from ..scenario import PERIOD_END, PERIOD_START, RATE_START, Script, at, dedication

pytestmark = pytest.mark.integration


def _with(
    message: OutgoingMessage, *, body: bytes | None = None, drop: str = ""
) -> OutgoingMessage:
    headers = {k: v for k, v in message.headers.items() if k != drop}
    return OutgoingMessage(
        subject=message.subject,
        headers=headers,
        body=message.body if body is None else body,
        event=message.event,
    )


async def test_bad_events_are_dead_lettered_and_good_ones_still_apply(
    start_billing, producer, ask, nats_client: Client, namespace: Namespace
) -> None:
    """Garbage, an unknown field and a dedication without a time go to factory.dlq.billing with their reasons; a later job is still metered."""
    await start_billing(retry_backoff_s=(0.05,))
    dead = await nats_client.subscribe(namespace.subject("factory.dlq.billing"))
    bad = Script()
    bad.finished("jx", 1, at(3, 1))
    bad.finished("jy", 1, at(3, 1))
    bad.add(dedication("d9", "acme", None), at(3, 1), scope="fra1")
    garbage, unknown_field, timeless = producer.build(bad)
    extra = msgspec.json.decode(unknown_field.body)
    await producer.send(
        [
            _with(garbage, body=b"{not json"),
            _with(unknown_field, body=msgspec.json.encode({**extra, "surprise": 1})),
            _with(timeless, drop="ce-time"),
        ]
    )
    good = Script()
    good.run("jz", at(4, 10), at(4, 11), [("n1", 2)], tenant="globex")
    await producer.send(producer.build(good))
    letters = []
    for _ in range(3):
        message = await dead.next_msg(timeout=60)
        letter = read_message(message.headers, message.data).data
        assert isinstance(letter, DeadLetter)
        letters.append(letter)
    await dead.unsubscribe()
    classes = sorted(letter.error_class for letter in letters)
    assert classes == ["UndecodableBody", "UndecodableBody", "ValueError"]
    assert any("CloudEvents time" in letter.error_message for letter in letters)

    async def globex() -> Invoice:
        return await ask(
            PreviewInvoice(tenant="globex", period_start=PERIOD_START, period_end=PERIOD_END),
            Invoice,
        )

    invoice = await wait_until(globex, lambda i: len(i.lines) == 1, timeout=30, what="usage")
    assert (invoice.lines[0].reason, str(invoice.lines[0].quantity)) == (
        "unknown_tenant",
        "2.000000",
    )


async def test_bad_commands_get_typed_errors(start_billing, ask) -> None:
    """A node-hour rate with a priority, a negative price, an empty period and an unknown invoice are refused with typed errors."""
    await start_billing()
    refusals = [
        SetRate(kind="node_hour", model="GB200", priority="standard", unit_price=Decimal(1),
                currency="EUR", effective_from=RATE_START, actor="t"),
        SetRate(kind="accelerator_hour", model="GB200", priority="standard",
                unit_price=Decimal("-1"), currency="EUR", effective_from=RATE_START, actor="t"),
        SetRate(kind="accelerator_hour", model="GB200", priority="standard",
                unit_price=Decimal("0.0000001"), currency="EUR", effective_from=RATE_START,
                actor="t"),
    ]  # fmt: skip
    for command in refusals:
        with pytest.raises(CommandFailed) as refused:
            await ask(command, RateView)
        assert refused.value.error.code == "invalid_request"
    with pytest.raises(CommandFailed) as empty:
        await ask(
            IssueInvoice(
                tenant="acme", period_start=PERIOD_END, period_end=PERIOD_START, actor="t"
            ),
            Invoice,
        )
    assert empty.value.error.code == "invalid_request"
    with pytest.raises(CommandFailed) as missing:
        await ask(GetInvoice(invoice_id="inv-nope-v1"), Invoice)
    assert missing.value.error.code == "not_found"
