"""Billing use cases: rates, accounts, invoices (commands and queries) and ingestion.

Each command or query handler takes the decoded contract and a unit of work and
returns the reply contract; refusals are ``CommandRejected`` (the kit turns them into
typed error replies). The ingest batch handler delegates to ``ledger.apply_batch``.
``BillingHandlers`` holds the settings and the clock (injectable for tests).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Sequence

import structlog
from sqlmodel import col, select

from aifactory.billing.facts import from_ms, to_ms
from aifactory.billing.invoices import (
    compute_invoice,
    decode_invoice,
    latest_issued,
    store_issued,
)
from aifactory.billing.ledger import apply_batch, void_event
from aifactory.billing.tables import AccountRow, InvoiceRow, RateRow
from aifactory.bus.rpc import CommandRejected, RequestContext
from aifactory.contracts.base import Contract
from aifactory.contracts.billing.v1 import (
    Account,
    AccountList,
    EventVoided,
    GetInvoice,
    Invoice,
    InvoiceIssued,
    InvoiceList,
    InvoiceSummary,
    IssueInvoice,
    ListAccounts,
    ListInvoices,
    ListRates,
    PreviewInvoice,
    RateCard,
    RateView,
    SetAccount,
    SetRate,
    VoidEvent,
)
from aifactory.contracts.envelope import Envelope
from aifactory.store.uow import NewEvent, UnitOfWork

log = structlog.get_logger(__name__)
MAX_PRICE = decimal.Decimal("1000000000")
MAX_PERIOD = dt.timedelta(days=3660)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _rate_id(kind: str, model: str, priority: str | None, currency: str, from_ms_: int) -> str:
    return f"{kind}/{model}/{priority or '-'}/{currency}/{from_ms_}"


def _validate_rate(command: SetRate) -> None:
    if command.kind == "accelerator_hour" and command.priority is None:
        raise CommandRejected("invalid_request", "an accelerator_hour rate needs a priority class")
    if command.kind == "node_hour" and command.priority is not None:
        raise CommandRejected("invalid_request", "a node_hour rate has no priority class")
    price = command.unit_price
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise CommandRejected(
            "invalid_request", f"unit_price must be between 0 and {MAX_PRICE}, got {price}"
        )
    exponent = price.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6:
        raise CommandRejected("invalid_request", "unit_price has more than 6 decimal places")


def _validate_period(start: dt.datetime, end: dt.datetime) -> None:
    if end <= start:
        raise CommandRejected("invalid_request", "period_end must be after period_start")
    if end - start > MAX_PERIOD:
        raise CommandRejected("invalid_request", "a period spans at most 10 years")


def _rate_views(rows: Sequence[RateRow]) -> list[RateView]:
    """Rate versions with ``effective_until`` (the next version of the same rate)."""
    ordered = sorted(
        rows, key=lambda r: (r.kind, r.model, r.priority or "", r.currency, r.effective_from_ms)
    )
    views: list[RateView] = []
    for index, row in enumerate(ordered):
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        same = following is not None and (
            following.kind,
            following.model,
            following.priority,
            following.currency,
        ) == (row.kind, row.model, row.priority, row.currency)
        views.append(
            RateView(
                rate_id=row.rate_id,
                kind=row.kind,  # type: ignore[arg-type]
                model=row.model,
                priority=row.priority,  # type: ignore[arg-type]
                unit_price=decimal.Decimal(row.unit_price),
                currency=row.currency,
                effective_from=from_ms(row.effective_from_ms),
                effective_until=(
                    from_ms(following.effective_from_ms) if same and following is not None else None
                ),
                actor=row.actor,
                set_at=from_ms(row.set_ms),
            )
        )
    return views


def _account(row: AccountRow, *, created: bool = False) -> Account:
    return Account(
        tenant=row.tenant,
        currency=row.currency,
        name=row.name,
        created=created,
        updated_at=from_ms(row.updated_ms),
    )


class BillingHandlers:
    """The billing use cases, with their settings and clock."""

    def __init__(
        self,
        *,
        credit_window_s: int,
        publish_usage: bool = True,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.credit_window_s = credit_window_s
        self.publish_usage = publish_usage
        self.clock = clock

    # ------------------------------------------------------------------ ingest
    async def ingest(
        self, envelopes: Sequence[Envelope[Contract]], uow: UnitOfWork
    ) -> list[NewEvent]:
        """Apply a batch of consumed events to facts and ledger (one transaction)."""
        events = await apply_batch(envelopes, uow, to_ms(self.clock()))
        return events if self.publish_usage else []

    async def void_event(
        self, command: VoidEvent, uow: UnitOfWork, ctx: RequestContext
    ) -> EventVoided:
        """Void a consumed event: reverse and re-derive the records it touched."""
        source = ctx.event.id if ctx.event is not None else f"void-{uuid.uuid4()}"
        result, events = await void_event(
            command.event_id, uow, source=source, recorded_ms=to_ms(self.clock())
        )
        if result is None:
            raise CommandRejected("not_found", f"billing never consumed event {command.event_id!r}")
        if self.publish_usage:
            uow.emit_all(events)
        voided, entries = result
        log.info(
            "event_voided",
            voided_event_id=command.event_id,
            facts=voided,
            entries=entries,
            reason=command.reason,
            actor=command.actor,
        )
        return EventVoided(event_id=command.event_id, facts_voided=voided, entries=entries)

    # ------------------------------------------------------------------ rates
    async def set_rate(self, command: SetRate, uow: UnitOfWork, _ctx: RequestContext) -> RateView:
        """Add (or, at the same instant, replace) a rate version."""
        _validate_rate(command)
        effective_ms = to_ms(command.effective_from)
        rate_id = _rate_id(
            command.kind, command.model, command.priority, command.currency, effective_ms
        )
        row = await uow.session.get(RateRow, rate_id)
        if row is None:
            row = RateRow(
                rate_id=rate_id,
                kind=command.kind,
                model=command.model,
                priority=command.priority,
                unit_price=str(command.unit_price),
                currency=command.currency,
                effective_from_ms=effective_ms,
                actor=command.actor,
                set_ms=to_ms(self.clock()),
            )
        else:
            row.unit_price = str(command.unit_price)
            row.actor = command.actor
            row.set_ms = to_ms(self.clock())
        uow.session.add(row)
        await uow.session.flush()
        rows = (
            await uow.session.exec(
                select(RateRow).where(
                    RateRow.kind == command.kind,
                    RateRow.model == command.model,
                    RateRow.currency == command.currency,
                )
            )
        ).all()
        return next(v for v in _rate_views(rows) if v.rate_id == rate_id)

    async def list_rates(self, query: ListRates, uow: UnitOfWork, _ctx: RequestContext) -> RateCard:
        """Rate versions, filtered by model, currency and the instant they are in effect."""
        rows = (await uow.session.exec(select(RateRow))).all()
        views = _rate_views(rows)
        if query.model is not None:
            views = [v for v in views if v.model == query.model]
        if query.currency is not None:
            views = [v for v in views if v.currency == query.currency]
        if query.at is not None:
            at = query.at
            views = [
                v
                for v in views
                if v.effective_from <= at and (v.effective_until is None or at < v.effective_until)
            ]
        return RateCard(rates=views)

    # ------------------------------------------------------------------ accounts
    async def set_account(
        self, command: SetAccount, uow: UnitOfWork, _ctx: RequestContext
    ) -> Account:
        """Create or update a tenant's account."""
        row = await uow.session.get(AccountRow, command.tenant)
        created = row is None
        if row is None:
            row = AccountRow(
                tenant=command.tenant,
                currency=command.currency,
                name=command.name,
                actor=command.actor,
                updated_ms=to_ms(self.clock()),
            )
        else:
            row.currency = command.currency
            row.name = command.name
            row.actor = command.actor
            row.updated_ms = to_ms(self.clock())
        uow.session.add(row)
        return _account(row, created=created)

    async def list_accounts(
        self, _query: ListAccounts, uow: UnitOfWork, _ctx: RequestContext
    ) -> AccountList:
        """Every account, in tenant order."""
        rows = (await uow.session.exec(select(AccountRow).order_by(col(AccountRow.tenant)))).all()
        return AccountList(accounts=[_account(row) for row in rows])

    # ------------------------------------------------------------------ invoices
    async def preview_invoice(
        self, query: PreviewInvoice, uow: UnitOfWork, _ctx: RequestContext
    ) -> Invoice:
        """A draft invoice computed now (nothing stored)."""
        _validate_period(query.period_start, query.period_end)
        return await compute_invoice(
            uow,
            query.tenant,
            query.period_start,
            query.period_end,
            now=self.clock(),
            credit_window_s=self.credit_window_s,
        )

    async def issue_invoice(
        self, command: IssueInvoice, uow: UnitOfWork, _ctx: RequestContext
    ) -> Invoice:
        """Issue a new version of the tenant's invoice for the period."""
        _validate_period(command.period_start, command.period_end)
        previous = await latest_issued(
            uow, command.tenant, command.period_start, command.period_end
        )
        invoice = await compute_invoice(
            uow,
            command.tenant,
            command.period_start,
            command.period_end,
            now=self.clock(),
            credit_window_s=self.credit_window_s,
            version=(previous.version + 1) if previous is not None else 1,
            supersedes=previous.invoice_id if previous is not None else None,
        )
        store_issued(uow, invoice)
        uow.emit(
            NewEvent(InvoiceIssued(invoice=invoice, actor=command.actor), tenant=invoice.tenant)
        )
        return invoice

    async def get_invoice(
        self, query: GetInvoice, uow: UnitOfWork, _ctx: RequestContext
    ) -> Invoice:
        """An issued invoice, exactly as issued."""
        row = await uow.session.get(InvoiceRow, query.invoice_id)
        if row is None:
            raise CommandRejected("not_found", f"no issued invoice {query.invoice_id!r}")
        return decode_invoice(row)

    async def list_invoices(
        self, query: ListInvoices, uow: UnitOfWork, _ctx: RequestContext
    ) -> InvoiceList:
        """Issued invoices, newest first."""
        statement = select(InvoiceRow)
        if query.tenant is not None:
            statement = statement.where(InvoiceRow.tenant == query.tenant)
        statement = statement.order_by(
            col(InvoiceRow.issued_ms).desc(), col(InvoiceRow.version).desc()
        ).limit(query.limit)
        rows = (await uow.session.exec(statement)).all()
        summaries = []
        for row in rows:
            invoice = decode_invoice(row)
            summaries.append(
                InvoiceSummary(
                    invoice_id=invoice.invoice_id,
                    tenant=invoice.tenant,
                    version=invoice.version,
                    supersedes=invoice.supersedes,
                    period_start=invoice.period_start,
                    period_end=invoice.period_end,
                    currency=invoice.currency,
                    total=invoice.total,
                    issued_at=from_ms(row.issued_ms),
                )
            )
        return InvoiceList(invoices=summaries)
