"""Billing in end-to-end tests: the rate card, invoice previews and the usage ledger.

One rate: B200, standard priority, 2.50 EUR per accelerator-hour, effective long
before any reported run; both tenants invoiced in EUR. ``amount`` prices exact
milliseconds the way the billing service promises (docs/billing.md): hours x price,
rounded half-even to the cent per line. ``net_usage`` folds the published ledger
(``usage_recorded`` records minus their reversals) into what is billed now.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from aifactory.contracts.billing.v1 import (
    Account,
    Invoice,
    PreviewInvoice,
    RateView,
    SetAccount,
    SetRate,
    UsageRecorded,
)
from aifactory.contracts.envelope import Envelope

from ._factory import TENANTS, Factory

PRICE = Decimal("2.50")
"""EUR per B200 accelerator-hour, standard priority."""
CENT = Decimal("0.01")
MS_PER_HOUR = Decimal(3_600_000)
RATES_FROM = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
UNIX_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


async def set_up_billing(factory: Factory) -> None:
    """Accounts for the tenants and the B200 standard rate."""
    for tenant in TENANTS:
        await factory.request(SetAccount(tenant=tenant, currency="EUR", actor="e2e"), Account)
    await factory.request(
        SetRate(
            kind="accelerator_hour",
            model="B200",
            priority="standard",
            unit_price=PRICE,
            currency="EUR",
            effective_from=RATES_FROM,
            actor="e2e",
        ),
        RateView,
    )


def accelerator_ms(accelerators: int, start: dt.datetime, end: dt.datetime) -> int:
    """Accelerator-milliseconds of a run (billing meters whole milliseconds)."""
    return accelerators * (_ms(end) - _ms(start))


def _ms(instant: dt.datetime) -> int:
    return (instant - UNIX_EPOCH) // dt.timedelta(milliseconds=1)


def amount(milliseconds: int, price: Decimal = PRICE) -> Decimal:
    """What ``milliseconds`` accelerator-milliseconds cost, rounded half-even to the cent."""
    return (Decimal(milliseconds) / MS_PER_HOUR * price).quantize(CENT, ROUND_HALF_EVEN)


async def preview(factory: Factory, tenant: str, start: dt.datetime, end: dt.datetime) -> Invoice:
    """The tenant's draft invoice for ``[start, end)``."""
    return await factory.request(
        PreviewInvoice(tenant=tenant, period_start=start, period_end=end), Invoice, timeout=30
    )


@dataclass(frozen=True, order=True)
class BilledRun:
    """One net usage record: a job attempt's metered window."""

    job_id: str | None
    attempt: int | None
    units: int
    start: dt.datetime
    end: dt.datetime | None
    node_failure: bool


def net_usage(log: list[Envelope[Any]]) -> list[BilledRun]:
    """The ledger's records that no reversal cancelled, in stream order."""
    records: dict[str, UsageRecorded] = {}
    for envelope in log:
        entry = envelope.data
        if not isinstance(entry, UsageRecorded):
            continue
        if entry.entry == "reversal":
            assert entry.reverses in records, f"reversal of an unknown entry: {entry}"
            del records[entry.reverses]
        else:
            records[entry.entry_id] = entry
    return [
        BilledRun(r.job_id, r.attempt, r.units, r.start, r.end, r.node_failure)
        for r in records.values()
    ]
