"""Billing contracts, version 1: rate cards, tenant accounts, the usage ledger, invoices.

The billing service meters usage from the job lifecycle events the scheduler and the
workload side publish (``jobs`` domain), node failures (``inventory``, ``health``) and
node dedications (``inventory``). It keeps an append-only ledger of usage records,
emits ``usage_recorded`` for each ledger entry (a correction is a ``reversal`` entry
followed by a new ``record`` entry) and ``invoice_issued`` when an invoice is issued.

Money is ``decimal.Decimal`` everywhere; on the wire it is a JSON **string**
(``"12.50"``), never a float. Quantities are hours as Decimal strings too. Rounding:
each invoice line's amount is ``quantity x unit_price`` rounded half-even to the cent;
subtotal, credits and total are sums of rounded lines. docs/billing.md has the
metering rules, rate resolution, credit policy and the unpriced reasons.
"""

from __future__ import annotations

import decimal
from typing import Annotated, Literal

import msgspec

from aifactory.contracts.base import Contract, Timestamp
from aifactory.contracts.registry import message

TenantId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*$")]
SiteId = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]*$")]
AcceleratorModel = Annotated[
    str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Currency = Annotated[str, msgspec.Meta(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$")]
"""An ISO 4217 code (``EUR``, ``USD``); ``XXX`` on an invoice of a tenant without an account."""
Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
InvoiceId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]
"""``inv-<tenant>-<period start>-<period end>-v<version>``; drafts have ``-draft``."""
Money = decimal.Decimal
"""An amount in the invoice's currency, a JSON string such as ``"1234.56"``."""
Hours = decimal.Decimal
"""A quantity of accelerator-hours or node-hours, a JSON string such as ``"1.500000"``."""

PriorityClass = Literal["critical", "standard", "preemptible"]
RateKind = Literal["accelerator_hour", "node_hour"]
"""``accelerator_hour``: per accelerator and hour of a job, by model x priority class;
``node_hour``: per node and hour of a dedication window, by model (priority not used)."""
LineKind = Literal["usage", "dedicated", "credit", "unpriced"]
InvoiceStatus = Literal["draft", "issued"]
UsageKind = Literal["usage", "covered", "dedicated"]
"""``usage``: a job attempt on shared nodes (billed per accelerator-hour); ``covered``:
the part of a job on nodes dedicated to its tenant (not billed again); ``dedicated``: a
node's dedication window (billed per node-hour)."""
EntryKind = Literal["record", "reversal"]
EntryId = Annotated[str, msgspec.Meta(min_length=1, max_length=160)]
UnpricedReason = Annotated[str, msgspec.Meta(max_length=64)]
"""``unknown_tenant``, ``unknown_model``, ``missing_rate``, ``negative_duration``
(see docs/billing.md)."""


# ---------------------------------------------------------------------- rates


class RateView(Contract, frozen=True, kw_only=True):
    """One version of a rate: the price of a unit from ``effective_from`` on."""

    rate_id: Annotated[str, msgspec.Meta(min_length=1, max_length=160)]
    kind: RateKind
    model: AcceleratorModel
    priority: PriorityClass | None = None
    """The priority class (``accelerator_hour`` rates); None for ``node_hour`` rates."""
    unit_price: Money
    currency: Currency
    effective_from: Timestamp
    effective_until: Timestamp | None = None
    """When the next version of the same rate takes over (None: still in effect)."""
    actor: Actor
    set_at: Timestamp


@message(domain="billing", name="set_rate", version=1, kind="cmd", reply=RateView)
class SetRate(Contract, frozen=True, kw_only=True):
    """Add a rate version effective from an instant (the same instant again replaces it).

    ``accelerator_hour`` needs ``priority``; ``node_hour`` must not have one. The price
    is a non-negative decimal with at most 6 decimal places.
    """

    kind: RateKind
    model: AcceleratorModel
    priority: PriorityClass | None = None
    unit_price: Money
    currency: Currency
    effective_from: Timestamp
    actor: Actor


class RateCard(Contract, frozen=True, kw_only=True):
    """Reply to ``ListRates``: rate versions by kind, model, priority and effective date."""

    rates: list[RateView]


@message(domain="billing", name="list_rates", version=1, kind="qry", reply=RateCard)
class ListRates(Contract, frozen=True, kw_only=True):
    """The rate card: every version, or only those in effect at ``at``."""

    model: AcceleratorModel | None = None
    currency: Currency | None = None
    at: Timestamp | None = None


# ---------------------------------------------------------------------- accounts


class Account(Contract, frozen=True, kw_only=True):
    """A tenant billing knows, and the currency it is invoiced in."""

    tenant: TenantId
    currency: Currency
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    created: bool = False
    """True when this command created the account (False: it existed; updated)."""
    updated_at: Timestamp


@message(domain="billing", name="set_account", version=1, kind="cmd", reply=Account)
class SetAccount(Contract, frozen=True, kw_only=True):
    """Create or update a tenant's billing account (usage of a tenant without one is unpriced)."""

    tenant: TenantId
    currency: Currency
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    actor: Actor


class AccountList(Contract, frozen=True, kw_only=True):
    """Reply to ``ListAccounts``."""

    accounts: list[Account]


@message(domain="billing", name="list_accounts", version=1, kind="qry", reply=AccountList)
class ListAccounts(Contract, frozen=True, kw_only=True):
    """Every tenant account, in tenant order."""


# ---------------------------------------------------------------------- ledger events


@message(domain="billing", name="usage_recorded", version=1, kind="evt", scope="tenant")
class UsageRecorded(Contract, frozen=True, kw_only=True):
    """A ledger entry: metered usage (``record``) or the reversal of an earlier one.

    A reversal repeats the reversed record's fields and names it in ``reverses``; the
    two cancel out in every total. ``end`` None: a dedication window still open.
    """

    entry_id: EntryId
    """``<source event id>/<n>``: unique, and the same whenever the event is replayed."""
    entry: EntryKind
    reverses: EntryId | None = None
    record_key: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    """What is metered: ``job/<job>/<attempt>/<segment>`` or ``node/<node>/<start ms>``."""
    source_event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    """The ``ce-id`` of the event whose arrival produced this entry."""
    usage: UsageKind
    tenant: TenantId
    job_id: JobId | None = None
    attempt: Annotated[int, msgspec.Meta(ge=1)] | None = None
    node_id: NodeId | None = None
    model: Annotated[str, msgspec.Meta(max_length=32)]
    priority: PriorityClass | None = None
    site_id: Annotated[str, msgspec.Meta(max_length=32)]
    units: Annotated[int, msgspec.Meta(ge=0)]
    """Accelerators (``usage``, ``covered``) or 1 node (``dedicated``)."""
    start: Timestamp
    end: Timestamp | None = None
    node_failure: bool = False
    """The attempt ended because one of its nodes failed (credit policy applies)."""
    unpriced_reason: UnpricedReason = ""


class EventVoided(Contract, frozen=True, kw_only=True):
    """Reply to ``VoidEvent``: how many facts were voided and ledger entries appended."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    facts_voided: Annotated[int, msgspec.Meta(ge=0)]
    """0: the event was voided before (nothing changed)."""
    entries: Annotated[int, msgspec.Meta(ge=0)]
    """Ledger entries appended (reversals and re-derived records)."""


@message(domain="billing", name="void_event", version=1, kind="cmd", reply=EventVoided)
class VoidEvent(Contract, frozen=True, kw_only=True):
    """Void a consumed event (by its ``ce-id``): metering ignores what it told from now on.

    The records it contributed to are reversed and re-derived without it (a wrongly
    reported finish, a bogus failure instant). ``not_found`` when billing never consumed it.
    """

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    actor: Actor


# ---------------------------------------------------------------------- invoices


class InvoiceLine(Contract, frozen=True, kw_only=True):
    """One line: usage of a model x priority x site, a dedication, a credit, or unpriced usage."""

    kind: LineKind
    model: Annotated[str, msgspec.Meta(max_length=32)] = ""
    priority: PriorityClass | None = None
    site_id: Annotated[str, msgspec.Meta(max_length=32)] = ""
    quantity: Hours
    """Hours (accelerator-hours or node-hours), 6 decimal places."""
    unit: RateKind
    unit_price: Money | None = None
    """None on an unpriced line."""
    amount: Money
    """``quantity x unit_price`` from the exact milliseconds, half-even to the cent
    (negative on a credit line, 0 on an unpriced line)."""
    records: Annotated[int, msgspec.Meta(ge=0)]
    """Ledger records contributing to the line."""
    reason: Annotated[str, msgspec.Meta(max_length=256)] = ""
    """Why a line is unpriced, or the policy behind a credit."""


class Invoice(Contract, frozen=True, kw_only=True):
    """A tenant's invoice for a period ``[period_start, period_end)``."""

    invoice_id: InvoiceId
    tenant: TenantId
    version: Annotated[int, msgspec.Meta(ge=0)]
    """0 for a draft (preview); 1, 2, ... for issued versions."""
    supersedes: InvoiceId | None = None
    """The invoice id of the previous issued version of the same tenant and period."""
    status: InvoiceStatus
    period_start: Timestamp
    period_end: Timestamp
    currency: Currency
    lines: list[InvoiceLine]
    subtotal: Money
    """Sum of usage and dedicated lines."""
    credits: Money
    """Sum of credit lines (zero or negative)."""
    total: Money
    """``subtotal + credits``."""
    unpriced_records: Annotated[int, msgspec.Meta(ge=0)]
    rounding: Annotated[str, msgspec.Meta(max_length=64)] = "line_half_even_0.01"
    issued_at: Timestamp | None = None
    computed_at: Timestamp


@message(domain="billing", name="preview_invoice", version=1, kind="qry", reply=Invoice)
class PreviewInvoice(Contract, frozen=True, kw_only=True):
    """Compute a tenant's invoice for ``[period_start, period_end)`` without issuing it."""

    tenant: TenantId
    period_start: Timestamp
    period_end: Timestamp


@message(domain="billing", name="issue_invoice", version=1, kind="cmd", reply=Invoice)
class IssueInvoice(Contract, frozen=True, kw_only=True):
    """Issue a tenant's invoice for a period; a repeat issues a new version superseding the last.

    An issued version never changes. Issuing again when nothing changed still makes a
    new version (a re-issue is always explicit).
    """

    tenant: TenantId
    period_start: Timestamp
    period_end: Timestamp
    actor: Actor


@message(domain="billing", name="get_invoice", version=1, kind="qry", reply=Invoice)
class GetInvoice(Contract, frozen=True, kw_only=True):
    """An issued invoice by id (``not_found`` when unknown)."""

    invoice_id: InvoiceId


class InvoiceSummary(Contract, frozen=True, kw_only=True):
    """One issued invoice, without its lines."""

    invoice_id: InvoiceId
    tenant: TenantId
    version: int
    supersedes: InvoiceId | None = None
    period_start: Timestamp
    period_end: Timestamp
    currency: Currency
    total: Money
    issued_at: Timestamp


class InvoiceList(Contract, frozen=True, kw_only=True):
    """Reply to ``ListInvoices``, newest first."""

    invoices: list[InvoiceSummary]


@message(domain="billing", name="list_invoices", version=1, kind="qry", reply=InvoiceList)
class ListInvoices(Contract, frozen=True, kw_only=True):
    """Issued invoices, optionally of one tenant."""

    tenant: TenantId | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 200


@message(domain="billing", name="invoice_issued", version=1, kind="evt", scope="tenant")
class InvoiceIssued(Contract, frozen=True, kw_only=True):
    """An invoice was issued (the finance system's cue); it never changes afterwards."""

    invoice: Invoice
    actor: Actor
