"""Pricing rules: rounding, rate resolution by effective date, credits, unpriced reasons."""

from __future__ import annotations

from decimal import Decimal

from aifactory.billing.pricing import (
    RateCard,
    RateVersion,
    Segment,
    UsageAggregate,
    charge,
    hours,
    price_invoice,
)

H = 3_600_000
T0 = 1_800_000_000_000
CARD = RateCard(
    (
        RateVersion("accelerator_hour", "GB200", "standard", Decimal("4.00"), "EUR", T0),
        RateVersion("accelerator_hour", "GB200", "standard", Decimal("5.00"), "EUR", T0 + 10 * H),
        RateVersion("node_hour", "GB200", None, Decimal("30"), "EUR", T0),
        RateVersion("accelerator_hour", "H100", "standard", Decimal("2.00"), "USD", T0),
    )
)


def usage(ms: int, *, model: str = "GB200", priority: str | None = "standard", kind: str = "usage",
          reason: str = "", credit: int = 0, records: int = 1) -> UsageAggregate:  # fmt: skip
    """One aggregate row."""
    return UsageAggregate(
        kind, model, priority, "fra1", reason, ms, credit, records, 1 if credit else 0
    )


def test_charge_rounds_half_even_to_the_cent() -> None:
    """Amounts are exact products rounded half-even: 0.125 -> 0.12, 0.135 -> 0.14, 0.375 -> 0.38."""
    assert charge(H, Decimal("0.125")) == Decimal("0.12")
    assert charge(H, Decimal("0.135")) == Decimal("0.14")
    assert charge(3 * H, Decimal("0.125")) == Decimal("0.38")
    assert charge(H // 3, Decimal("4.00")) == Decimal("1.33")


def test_hours_are_shown_with_six_decimals() -> None:
    """Milliseconds are shown as hours with 6 decimal places."""
    assert str(hours(H // 3)) == "0.333333"
    assert str(hours(-4 * H)) == "-4.000000"


def test_rate_in_effect_is_the_latest_version_at_that_instant() -> None:
    """A rate resolves to the newest version effective at or before the instant."""
    rate = CARD.resolve("accelerator_hour", "GB200", "standard", "EUR", T0 + 10 * H)
    assert not isinstance(rate, str)
    assert rate.unit_price == Decimal("5.00")
    before = CARD.resolve("accelerator_hour", "GB200", "standard", "EUR", T0 + 10 * H - 1)
    assert not isinstance(before, str)
    assert before.unit_price == Decimal("4.00")


def test_missing_and_unknown_rates_have_distinct_reasons() -> None:
    """No rate for the model at all: unknown_model; not for the priority or not yet: missing_rate."""
    assert CARD.resolve("accelerator_hour", "B300", "standard", "EUR", T0) == "unknown_model"
    assert CARD.resolve("accelerator_hour", "GB200", "critical", "EUR", T0) == "missing_rate"
    assert CARD.resolve("accelerator_hour", "GB200", "standard", "EUR", T0 - 1) == "missing_rate"
    assert CARD.resolve("accelerator_hour", "H100", "standard", "EUR", T0) == "unknown_model"


def test_cut_points_split_the_period_at_rate_changes() -> None:
    """The period is cut at every rate change strictly inside it."""
    assert CARD.cut_points(T0, T0 + 20 * H) == [T0, T0 + 10 * H, T0 + 20 * H]
    assert CARD.cut_points(T0 + H, T0 + 2 * H) == [T0 + H, T0 + 2 * H]


def test_lines_are_priced_per_segment_rounded_once_per_line_and_totalled() -> None:
    """Usage in two rate segments, a node-hour line and a credit give the hand-computed totals."""
    priced = price_invoice(
        [
            Segment(T0, [usage(H // 3, credit=H // 3), usage(H // 3), usage(24 * H, kind="dedicated",
                                                                            priority=None)]),
            Segment(T0 + 10 * H, [usage(2 * H)]),
        ],
        CARD,
        "EUR",
        credit_reason="node failure within 30 min of start",
    )  # fmt: skip
    table = [(ln.kind, str(ln.unit_price), str(ln.quantity), str(ln.amount), ln.records)
             for ln in priced.lines]  # fmt: skip
    assert table == [
        ("usage", "4.00", "0.666667", "2.67", 2),  # 2/3 h at 4.00, rounded once
        ("usage", "5.00", "2.000000", "10.00", 1),
        ("dedicated", "30", "24.000000", "720.00", 1),
        ("credit", "4.00", "0.333333", "-1.33", 1),
    ]
    assert (priced.subtotal, priced.credits, priced.total) == (
        Decimal("732.67"),
        Decimal("-1.33"),
        Decimal("731.34"),
    )


def test_unpriced_usage_is_shown_with_its_reason_and_never_priced() -> None:
    """Usage without a rate, or of a tenant without an account, is an unpriced line with amount 0."""
    priced = price_invoice(
        [Segment(T0, [usage(H, model="B300"), usage(-H, reason="negative_duration")])],
        CARD,
        "EUR",
        credit_reason="",
    )
    assert [(ln.kind, ln.model, ln.reason, str(ln.amount)) for ln in priced.lines] == [
        ("unpriced", "B300", "unknown_model", "0.00"),
        ("unpriced", "GB200", "negative_duration", "0.00"),
    ]
    assert priced.unpriced_records == 2
    assert priced.total == Decimal("0.00")
    no_account = price_invoice([Segment(T0, [usage(H)])], CARD, None, credit_reason="")
    assert no_account.currency == "XXX"
    assert [(ln.kind, ln.reason) for ln in no_account.lines] == [("unpriced", "unknown_tenant")]


def test_fully_reversed_groups_leave_no_line() -> None:
    """An aggregate whose records were all reversed (0 ms, 0 records) yields no line."""
    priced = price_invoice([Segment(T0, [usage(0, records=0)])], CARD, "EUR", credit_reason="")
    assert priced.lines == []
