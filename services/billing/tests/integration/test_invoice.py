"""Acceptance: a scripted job history over real NATS yields exactly the hand-computed invoice."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed
from aifactory.bus.settings import Namespace
from aifactory.contracts.billing.v1 import Account as AccountReply
from aifactory.contracts.billing.v1 import (
    EventVoided,
    GetInvoice,
    Invoice,
    InvoiceList,
    IssueInvoice,
    ListInvoices,
    PreviewInvoice,
    RateView,
    SetAccount,
    SetRate,
    VoidEvent,
)
from aifactory.testing.waiting import wait_until

from ..scenario import (
    EXPECTED_ACME,
    EXPECTED_ACME_TOTALS,
    EXPECTED_UNPRICED_REASONS,
    PERIOD_END,
    PERIOD_START,
    line_table,
    november,
    rate_commands,
)

pytestmark = pytest.mark.integration


async def configure(ask) -> None:
    """Send the scenario's accounts and rates."""
    for command in rate_commands():
        reply_type = AccountReply if isinstance(command, SetAccount) else RateView
        assert isinstance(command, SetAccount | SetRate)
        await ask(command, reply_type)


async def preview(ask, tenant: str = "acme") -> Invoice:
    """The tenant's November draft."""
    return await ask(
        PreviewInvoice(tenant=tenant, period_start=PERIOD_START, period_end=PERIOD_END), Invoice
    )


def matches_hand(invoice: Invoice) -> bool:
    """Whether the invoice is the hand-computed one."""
    return (
        line_table(invoice) == EXPECTED_ACME
        and {
            "subtotal": str(invoice.subtotal),
            "credits": str(invoice.credits),
            "total": str(invoice.total),
        }
        == EXPECTED_ACME_TOTALS
    )


async def test_scripted_history_gives_the_hand_computed_invoice(
    start_billing, producer, ask
) -> None:
    """Lines (usage split at the rate change, dedication, credit, unpriced with reasons) and totals equal the hand computation."""
    await start_billing()
    await configure(ask)
    await producer.send(producer.build(november()))
    invoice = await wait_until(lambda: preview(ask), matches_hand, timeout=60, what="invoice")
    assert invoice.status == "draft"
    assert invoice.currency == "EUR"
    assert invoice.unpriced_records == 3
    reasons = {ln.model: ln.reason for ln in invoice.lines if ln.kind == "unpriced"}
    assert reasons == EXPECTED_UNPRICED_REASONS
    globex = await preview(ask, "globex")
    assert [(ln.kind, ln.reason, str(ln.quantity)) for ln in globex.lines] == [
        ("unpriced", "unknown_tenant", "1.000000")
    ]
    assert globex.currency == "XXX"
    assert str(globex.total) == "0.00"


async def test_issued_invoice_is_immutable_and_a_reissue_supersedes_it(
    start_billing, producer, ask, nats_client: Client, namespace: Namespace
) -> None:
    """Issuing stores version 1; a rate added later changes a re-issue (version 2, supersedes v1) but not v1."""
    await start_billing()
    await configure(ask)
    await producer.send(producer.build(november()))
    await wait_until(lambda: preview(ask), matches_hand, timeout=60, what="invoice")
    issue = IssueInvoice(
        tenant="acme", period_start=PERIOD_START, period_end=PERIOD_END, actor="finance@test"
    )
    first = await ask(issue, Invoice)
    assert (first.status, first.version, first.supersedes) == ("issued", 1, None)
    assert str(first.total) == "975.00"
    await ask(
        SetRate(kind="accelerator_hour", model="H100", priority="preemptible",
                unit_price=first.lines[0].unit_price, currency="EUR",
                effective_from=PERIOD_START, actor="finance@test"),
        RateView,
    )  # fmt: skip
    second = await ask(issue, Invoice)
    assert (second.version, second.supersedes) == (2, first.invoice_id)
    assert second.total != first.total
    assert second.unpriced_records == 2
    again = await ask(GetInvoice(invoice_id=first.invoice_id), Invoice)
    assert again == first
    listed = await ask(ListInvoices(tenant="acme"), InvoiceList)
    assert [s.version for s in listed.invoices] == [2, 1]


async def test_replay_with_duplicates_and_shuffling_changes_no_total(
    start_billing, producer, ask, nats_client: Client, namespace: Namespace
) -> None:
    """10% of events re-sent (new Nats-Msg-Id, same ce-id), order shuffled in windows of 8, then a full replay from the start: the invoice stays the hand-computed one."""
    rng = random.Random(7)
    messages = producer.build(november())
    for message in rng.sample(messages, k=max(1, len(messages) // 10)):
        copy = type(message)(
            subject=message.subject,
            headers={**message.headers, "Nats-Msg-Id": message.headers["Nats-Msg-Id"] + "-again"},
            body=message.body,
            event=message.event,
        )
        messages.insert(rng.randrange(len(messages) + 1), copy)
    shuffled = []
    for start in range(0, len(messages), 8):
        window = messages[start : start + 8]
        rng.shuffle(window)
        shuffled.extend(window)
    service = await start_billing()
    await configure(ask)
    await producer.send(shuffled)
    first = await wait_until(lambda: preview(ask), matches_hand, timeout=60, what="invoice")
    await service.stop()
    # Replay: the durable consumers are deleted, so everything is delivered again.
    js = nats_client.jetstream()
    for stream, durable in (
        ("FACTORY_JOBS", "billing-jobs"),
        ("FACTORY_INVENTORY", "billing-inventory"),
        ("FACTORY_HEALTH", "billing-health"),
    ):
        await js.delete_consumer(namespace.stream(stream), namespace.stream(durable))
    await start_billing()

    async def drained() -> int:
        info = await js.consumer_info(
            namespace.stream("FACTORY_JOBS"), namespace.stream("billing-jobs")
        )
        return info.num_pending + info.num_ack_pending

    await wait_until(drained, lambda n: n == 0, timeout=60, what="replay consumed")
    again = await preview(ask)
    assert matches_hand(again)
    assert (again.lines, again.total) == (first.lines, first.total)


async def test_voiding_an_event_reverses_its_records(start_billing, producer, ask) -> None:
    """Voiding j8's wrong finish report reverses its unpriced record; voiding again changes nothing; an unknown id is not_found."""
    await start_billing()
    await configure(ask)
    script = november()
    await producer.send(producer.build(script))
    await wait_until(lambda: preview(ask), matches_hand, timeout=60, what="invoice")
    (finish_id,) = [
        event_id
        for event, event_id, _ in script.events
        if getattr(event.data, "job_id", None) == "j8"
        and type(event.data).__name__ == "JobFinished"
    ]
    voided = await ask(VoidEvent(event_id=finish_id, reason="wrong job", actor="t"), EventVoided)
    assert (voided.facts_voided, voided.entries) == (1, 1)  # one reversal, no new record
    after = await preview(ask)
    assert after.unpriced_records == 2
    assert "negative_duration" not in {ln.reason for ln in after.lines}
    assert after.total == Decimal(EXPECTED_ACME_TOTALS["total"])
    again = await ask(VoidEvent(event_id=finish_id, reason="wrong job", actor="t"), EventVoided)
    assert (again.facts_voided, again.entries) == (0, 0)
    with pytest.raises(CommandFailed) as unknown:
        await ask(VoidEvent(event_id="no-such-event", reason="x", actor="t"), EventVoided)
    assert unknown.value.error.code == "not_found"
