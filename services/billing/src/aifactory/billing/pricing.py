"""Pricing rules: rate resolution, rounding, invoice lines and totals.

Pure and synchronous; Decimal only. The store aggregates the ledger per period
segment (SQL ``GROUP BY``) into ``UsageAggregate`` rows of exact milliseconds; this
module prices them:

- a rate version applies from its ``effective_from`` until the next version of the
  same rate (kind, model, priority, currency); usage is split at rate changes (the
  store cuts the period there), so each millisecond is priced by the rate in effect
  at that millisecond;
- a line's amount is ``milliseconds / 3,600,000 x unit_price`` computed exactly, then
  rounded half-even to the cent (``0.01``), once per line; quantities are shown in
  hours with 6 decimal places (half-even); totals are sums of rounded lines;
- credits: usage that ended by a node failure within the credit window of its start
  becomes a credit line for its charge (negative amount);
- usage that cannot be priced (tenant without account, model without any rate, no
  rate in effect, negative duration) becomes an ``unpriced`` line with its reason
  and amount 0: never dropped, never silently priced at zero.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MS_PER_HOUR = 3_600_000
CENT = decimal.Decimal("0.01")
QUANTITY_STEP = decimal.Decimal("0.000001")
ZERO = decimal.Decimal("0.00")
NO_CURRENCY = "XXX"
"""ISO 4217 "no currency": the currency of an invoice for a tenant without an account."""
_CONTEXT = decimal.Context(prec=60, rounding=decimal.ROUND_HALF_EVEN)


def hours(milliseconds: int) -> decimal.Decimal:
    """Milliseconds as hours, 6 decimal places, half-even (for display on a line)."""
    return (_CONTEXT.divide(decimal.Decimal(milliseconds), MS_PER_HOUR)).quantize(
        QUANTITY_STEP, rounding=decimal.ROUND_HALF_EVEN, context=_CONTEXT
    )


def charge(milliseconds: int, unit_price: decimal.Decimal) -> decimal.Decimal:
    """``milliseconds`` of a unit priced per hour, exact, rounded half-even to the cent."""
    exact = _CONTEXT.divide(
        _CONTEXT.multiply(decimal.Decimal(milliseconds), unit_price), MS_PER_HOUR
    )
    return exact.quantize(CENT, rounding=decimal.ROUND_HALF_EVEN, context=_CONTEXT)


@dataclass(frozen=True, slots=True)
class RateVersion:
    """One version of a rate."""

    kind: str
    """``accelerator_hour`` or ``node_hour``."""
    model: str
    priority: str | None
    unit_price: decimal.Decimal
    currency: str
    effective_from_ms: int


@dataclass(frozen=True, slots=True)
class RateCard:
    """All rate versions, resolvable by instant."""

    versions: tuple[RateVersion, ...]

    def cut_points(self, start_ms: int, end_ms: int) -> list[int]:
        """``start``, every rate change strictly inside ``(start, end)``, ``end``."""
        inside = {
            v.effective_from_ms for v in self.versions if start_ms < v.effective_from_ms < end_ms
        }
        return sorted({start_ms, end_ms} | inside)

    def resolve(
        self, kind: str, model: str, priority: str | None, currency: str, at_ms: int
    ) -> RateVersion | str:
        """The version in effect at ``at_ms``, or the unpriced reason why there is none."""
        of_model = [v for v in self.versions if v.model == model and v.currency == currency]
        if not any(v.kind == kind for v in of_model):
            return "unknown_model"
        key = priority if kind == "accelerator_hour" else None
        candidates = [
            v
            for v in of_model
            if v.kind == kind and v.priority == key and v.effective_from_ms <= at_ms
        ]
        if not candidates:
            return "missing_rate"
        return max(candidates, key=lambda v: v.effective_from_ms)


@dataclass(frozen=True, slots=True)
class UsageAggregate:
    """The ledger summed over one period segment for one group (from the store)."""

    usage: str
    """``usage`` or ``dedicated`` (``covered`` usage is not billed and not aggregated)."""
    model: str
    priority: str | None
    site_id: str
    unpriced_reason: str
    milliseconds: int
    """Unit-milliseconds (accelerator-ms or node-ms) inside the segment."""
    credit_milliseconds: int
    """Of those, the ones the credit policy credits."""
    records: int
    """Net records (a reversal cancels its record) counted in the segment they start in."""
    credit_records: int = 0


@dataclass(frozen=True, slots=True)
class Segment:
    """The aggregates of one part of the period with a single rate in effect."""

    start_ms: int
    aggregates: Sequence[UsageAggregate]


@dataclass(frozen=True, slots=True)
class PricedLine:
    """An invoice line (the service turns it into the ``InvoiceLine`` contract)."""

    kind: str
    model: str
    priority: str | None
    site_id: str
    unit: str
    unit_price: decimal.Decimal | None
    milliseconds: int
    records: int
    reason: str = ""

    @property
    def quantity(self) -> decimal.Decimal:
        """Hours, 6 decimal places."""
        return hours(self.milliseconds)

    @property
    def amount(self) -> decimal.Decimal:
        """The line's amount (negative for credits, zero when unpriced)."""
        if self.unit_price is None:
            return ZERO
        value = charge(self.milliseconds, self.unit_price)
        return -value if self.kind == "credit" else value


@dataclass(frozen=True, slots=True)
class PricedInvoice:
    """Lines and totals of an invoice."""

    currency: str
    lines: list[PricedLine]

    @property
    def subtotal(self) -> decimal.Decimal:
        """Sum of the usage and dedicated lines."""
        return sum((ln.amount for ln in self.lines if ln.kind in ("usage", "dedicated")), ZERO)

    @property
    def credits(self) -> decimal.Decimal:
        """Sum of the credit lines (zero or negative)."""
        return sum((ln.amount for ln in self.lines if ln.kind == "credit"), ZERO)

    @property
    def total(self) -> decimal.Decimal:
        """``subtotal + credits``."""
        return self.subtotal + self.credits

    @property
    def unpriced_records(self) -> int:
        """Records on unpriced lines."""
        return sum(ln.records for ln in self.lines if ln.kind == "unpriced")


_LINE_ORDER = {"usage": 0, "dedicated": 1, "credit": 2, "unpriced": 3}


def price_invoice(
    segments: Iterable[Segment],
    rates: RateCard,
    currency: str | None,
    credit_reason: str,
) -> PricedInvoice:
    """Price every segment's aggregates into merged lines.

    ``currency`` None: the tenant has no account; everything is unpriced
    (``unknown_tenant``). Lines with the same kind, model, priority, site, unit price
    and reason are merged (their milliseconds add up before rounding).
    """
    merged: dict[tuple[str, str, str | None, str, str, decimal.Decimal | None, str], list[int]] = {}

    def add(  # noqa: PLR0917 - a local helper; the call sites read as a line's columns
        kind: str,
        aggregate: UsageAggregate,
        unit: str,
        price: decimal.Decimal | None,
        reason: str,
        milliseconds: int,
        records: int,
    ) -> None:
        key = (
            kind,
            aggregate.model,
            aggregate.priority if unit == "accelerator_hour" else None,
            aggregate.site_id,
            unit,
            price,
            reason,
        )
        totals = merged.setdefault(key, [0, 0])
        totals[0] += milliseconds
        totals[1] += records

    for segment in segments:
        for aggregate in segment.aggregates:
            if aggregate.records == 0 and aggregate.milliseconds == 0:
                continue  # reversed away entirely
            unit = "node_hour" if aggregate.usage == "dedicated" else "accelerator_hour"
            kind = "dedicated" if aggregate.usage == "dedicated" else "usage"
            reason = aggregate.unpriced_reason
            rate: RateVersion | str | None = None
            if not reason and currency is None:
                reason = "unknown_tenant"
            if not reason:
                rate = rates.resolve(
                    unit, aggregate.model, aggregate.priority, currency or "", segment.start_ms
                )
                if isinstance(rate, str):
                    reason, rate = rate, None
            if rate is None or isinstance(rate, str):
                add(
                    "unpriced",
                    aggregate,
                    unit,
                    None,
                    reason,
                    aggregate.milliseconds,
                    aggregate.records,
                )
                continue
            add(
                kind,
                aggregate,
                unit,
                rate.unit_price,
                "",
                aggregate.milliseconds,
                aggregate.records,
            )
            if aggregate.credit_milliseconds:
                add(
                    "credit",
                    aggregate,
                    unit,
                    rate.unit_price,
                    credit_reason,
                    aggregate.credit_milliseconds,
                    aggregate.credit_records,
                )
    lines = [
        PricedLine(
            kind=kind,
            model=model,
            priority=priority,
            site_id=site,
            unit=unit,
            unit_price=price,
            milliseconds=ms,
            records=records,
            reason=reason,
        )
        for (kind, model, priority, site, unit, price, reason), (ms, records) in merged.items()
        if ms or records
    ]
    lines.sort(
        key=lambda ln: (
            _LINE_ORDER[ln.kind],
            ln.model,
            ln.priority or "",
            ln.site_id,
            ln.unit,
            ln.unit_price or 0,
            ln.reason,
        )
    )
    return PricedInvoice(currency=currency or NO_CURRENCY, lines=lines)
