"""Computing, issuing and reading invoices.

An invoice is an SQL aggregate over the tenant's ledger (``GROUP BY`` usage, model,
priority, site and unpriced reason), run once per part of the period with a single
rate version in effect (the period is cut at every rate change inside it), then
priced by ``pricing``. Each record contributes the part of its window inside the
period: a job that ran across midnight of the month's end is billed in each month
for its time there. A dedication window still open is counted up to ``now``.

Issuing stores the computed invoice whole, as a new version of the tenant's invoice
for that period (``supersedes`` the previous version); an issued version is never
updated. ``InvoiceIssued`` goes out through the outbox in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import BigInteger, ColumnElement, and_, case, func, literal, select
from sqlmodel import col
from sqlmodel import select as select_rows

from aifactory.billing.facts import to_ms
from aifactory.billing.pricing import (
    PricedInvoice,
    RateCard,
    RateVersion,
    Segment,
    UsageAggregate,
    price_invoice,
)
from aifactory.billing.tables import AccountRow, InvoiceRow, LedgerRow, RateRow
from aifactory.contracts.billing.v1 import Invoice, InvoiceLine
from aifactory.store.uow import UnitOfWork

_LEDGER = LedgerRow.__table__  # type: ignore[attr-defined]
_invoice_decoder = msgspec.json.Decoder(Invoice)
_encoder = msgspec.json.Encoder()


def _ms(value: int) -> ColumnElement[int]:
    return literal(value, BigInteger())


def _stamp(instant: dt.datetime) -> str:
    utc = instant.astimezone(dt.UTC)
    if utc.time() == dt.time(0):
        return utc.strftime("%Y%m%d")
    return utc.strftime("%Y%m%dT%H%M%SZ")


def invoice_id(tenant: str, start: dt.datetime, end: dt.datetime, version: int) -> str:
    """``inv-<tenant>-<start>-<end>-v<version>`` (``-draft`` for version 0)."""
    suffix = "draft" if version == 0 else f"v{version}"
    return f"inv-{tenant}-{_stamp(start)}-{_stamp(end)}-{suffix}"


async def load_rates(uow: UnitOfWork) -> RateCard:
    """Every rate version."""
    rows = (await uow.session.exec(select_rows(RateRow))).all()
    return RateCard(
        tuple(
            RateVersion(
                kind=row.kind,
                model=row.model,
                priority=row.priority,
                unit_price=decimal.Decimal(row.unit_price),
                currency=row.currency,
                effective_from_ms=row.effective_from_ms,
            )
            for row in rows
        )
    )


async def aggregate_period(
    uow: UnitOfWork,
    tenant: str,
    cuts: Sequence[int],
    *,
    now_ms: int,
    credit_window_ms: int,
) -> list[Segment]:
    """The tenant's ledger summed per segment ``[cuts[i], cuts[i+1])``, in ONE SQL scan.

    Each record contributes the part of its window inside each segment (open windows
    end at ``now_ms``); a record is counted in the segment it starts in (records that
    started before the period in the first); a ``negative_duration`` record contributes
    its raw (negative) duration to the segment it starts in.
    """
    c = _LEDGER.c
    period_start, period_end = _ms(cuts[0]), _ms(cuts[-1])
    effective_end = case((c.end_ms.is_(None), _ms(now_ms)), else_=c.end_ms)
    negative = c.unpriced_reason == "negative_duration"
    credited = and_(
        c.node_failure.is_(True),
        c.usage == "usage",
        effective_end - c.start_ms <= _ms(credit_window_ms),
    )
    columns: list[Any] = []
    for index, (start, end) in enumerate(itertools.pairwise(cuts)):
        a, b = _ms(start), _ms(end)
        starts_here = and_(c.start_ms >= a, c.start_ms < b) if index else c.start_ms < b
        overlap_end = case((effective_end < b, effective_end), else_=b)
        overlap_start = case((c.start_ms > a, c.start_ms), else_=a)
        milliseconds = case(
            (negative, case((starts_here, c.sign * c.units * (c.end_ms - c.start_ms)), else_=0)),
            (overlap_end > overlap_start, c.sign * c.units * (overlap_end - overlap_start)),
            else_=0,
        )
        columns += [
            func.sum(milliseconds),
            func.sum(case((credited, milliseconds), else_=0)),
            func.sum(case((starts_here, c.sign), else_=0)),
            func.sum(case((and_(starts_here, credited), c.sign), else_=0)),
        ]
    query = (
        select(c.usage, c.model, c.priority, c.site_id, c.unpriced_reason, *columns)
        .where(
            c.tenant == tenant,
            c.usage != "covered",
            c.start_ms < period_end,
            (effective_end > period_start) | (c.start_ms >= period_start),
        )
        .group_by(c.usage, c.model, c.priority, c.site_id, c.unpriced_reason)
    )
    conn = await uow.session.connection()
    rows = (await conn.execute(query)).all()
    segments = []
    for index, start in enumerate(cuts[:-1]):
        offset = 5 + 4 * index
        segments.append(
            Segment(
                start,
                [
                    UsageAggregate(
                        usage=row[0],
                        model=row[1],
                        priority=row[2],
                        site_id=row[3],
                        unpriced_reason=row[4],
                        milliseconds=int(row[offset] or 0),
                        credit_milliseconds=int(row[offset + 1] or 0),
                        records=int(row[offset + 2] or 0),
                        credit_records=int(row[offset + 3] or 0),
                    )
                    for row in rows
                ],
            )
        )
    return segments


def _lines(priced: PricedInvoice) -> list[InvoiceLine]:
    return [
        InvoiceLine(
            kind=line.kind,  # type: ignore[arg-type]
            model=line.model,
            priority=line.priority,  # type: ignore[arg-type]
            site_id=line.site_id,
            quantity=line.quantity,
            unit=line.unit,  # type: ignore[arg-type]
            unit_price=line.unit_price,
            amount=line.amount,
            records=line.records,
            reason=line.reason,
        )
        for line in priced.lines
    ]


async def compute_invoice(
    uow: UnitOfWork,
    tenant: str,
    period_start: dt.datetime,
    period_end: dt.datetime,
    *,
    now: dt.datetime,
    credit_window_s: int,
    version: int = 0,
    supersedes: str | None = None,
) -> Invoice:
    """The tenant's invoice for ``[period_start, period_end)`` as of ``now`` (a draft)."""
    account = await uow.session.get(AccountRow, tenant)
    rates = await load_rates(uow)
    start_ms, end_ms, now_ms = to_ms(period_start), to_ms(period_end), to_ms(now)
    segments = await aggregate_period(
        uow,
        tenant,
        rates.cut_points(start_ms, end_ms),
        now_ms=now_ms,
        credit_window_ms=credit_window_s * 1000,
    )
    minutes = credit_window_s // 60
    priced = price_invoice(
        segments,
        rates,
        account.currency if account is not None else None,
        credit_reason=f"node failure within {minutes} min of start",
    )
    return Invoice(
        invoice_id=invoice_id(tenant, period_start, period_end, version),
        tenant=tenant,
        version=version,
        supersedes=supersedes,
        status="issued" if version else "draft",
        period_start=period_start,
        period_end=period_end,
        currency=priced.currency,
        lines=_lines(priced),
        subtotal=priced.subtotal,
        credits=priced.credits,
        total=priced.total,
        unpriced_records=priced.unpriced_records,
        issued_at=now if version else None,
        computed_at=now,
    )


async def latest_issued(
    uow: UnitOfWork, tenant: str, period_start: dt.datetime, period_end: dt.datetime
) -> InvoiceRow | None:
    """The newest issued version of the tenant's invoice for that period."""
    rows = await uow.session.exec(
        select_rows(InvoiceRow)
        .where(
            InvoiceRow.tenant == tenant,
            InvoiceRow.period_start_ms == to_ms(period_start),
            InvoiceRow.period_end_ms == to_ms(period_end),
        )
        .order_by(col(InvoiceRow.version).desc())
        .limit(1)
    )
    return rows.first()


def store_issued(uow: UnitOfWork, invoice: Invoice) -> None:
    """Queue the issued ``invoice`` for insertion (committed with the unit of work)."""
    uow.insert_rows(
        InvoiceRow,
        [
            {
                "invoice_id": invoice.invoice_id,
                "tenant": invoice.tenant,
                "period_start_ms": to_ms(invoice.period_start),
                "period_end_ms": to_ms(invoice.period_end),
                "version": invoice.version,
                "body": _encoder.encode(invoice),
                "issued_ms": to_ms(invoice.issued_at or invoice.computed_at),
            }
        ],
    )


def decode_invoice(row: InvoiceRow) -> Invoice:
    """The stored invoice, exactly as issued."""
    return _invoice_decoder.decode(row.body)
