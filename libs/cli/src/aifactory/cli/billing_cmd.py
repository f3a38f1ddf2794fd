"""``aifactory invoice`` and ``aifactory billing``: invoices, rates and accounts, by NATS.

- ``aifactory invoice --tenant T --period 2026-11 [--format table|json|csv]`` prints
  the tenant's draft invoice for the calendar month (or ``--from``/``--to`` for any
  range, ISO 8601 instants, UTC when no offset is given); ``--issue`` issues it (a new
  version superseding the previous one); ``--id ID`` prints an issued invoice as issued.
- ``aifactory billing set-rate``, ``rates``, ``account``, ``accounts``, ``invoices``,
  ``void EVENT_ID --reason TEXT`` (metering ignores that event from now on).

``render_invoice(console, invoice, fmt)`` is the one renderer (``aifactory demo`` uses
it too). Everything goes through the billing contracts with ``request``; the CLI never
imports the service. Exit status: 0 ok, 1 refused, 2 usage or service unreachable.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import decimal
import io
import re
from typing import Annotated, Literal, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.cli.connection import connect
from aifactory.cli.console import USAGE_EXIT_CODE, CliError, exit_on_error, stdout_console
from aifactory.cli.settings import resolve_settings
from aifactory.contracts.base import Contract
from aifactory.contracts.billing.v1 import (
    Account,
    AccountList,
    EventVoided,
    GetInvoice,
    Invoice,
    InvoiceList,
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

R = TypeVar("R", bound=Contract)
REQUEST_TIMEOUT_S = 60.0
InvoiceFormat = Literal["table", "json", "csv"]
FORMATS: tuple[str, ...] = ("table", "json", "csv")
CSV_COLUMNS = (
    "kind",
    "model",
    "priority",
    "site_id",
    "quantity",
    "unit",
    "unit_price",
    "amount",
    "records",
    "reason",
)
_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")

billing_app = typer.Typer(
    help="Billing: rates, tenant accounts, issued invoices.", no_args_is_help=True
)
NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", help="NATS URL (default: AIFACTORY_NATS_URL, NATS_URL)."),
]
ActorOption = Annotated[str, typer.Option("--actor", help="Who makes the change.")]


# ---------------------------------------------------------------------- rendering


def _money(value: decimal.Decimal | None) -> str:
    return "" if value is None else f"{value}"


def render_invoice(console: Console, invoice: Invoice, fmt: str = "table") -> None:
    """Print ``invoice`` as a table (people), JSON (machines) or CSV (spreadsheets)."""
    if fmt == "json":
        console.print(
            msgspec.json.format(msgspec.json.encode(invoice), indent=2).decode(),
            markup=False,
            highlight=False,
        )
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for line in invoice.lines:
            writer.writerow(
                [
                    line.kind,
                    line.model,
                    line.priority or "",
                    line.site_id,
                    line.quantity,
                    line.unit,
                    _money(line.unit_price),
                    line.amount,
                    line.records,
                    line.reason,
                ]
            )
        for label, amount in (
            ("subtotal", invoice.subtotal),
            ("credits", invoice.credits),
            ("total", invoice.total),
        ):
            writer.writerow([label, "", "", "", "", "", "", amount, "", invoice.currency])
        console.print(buffer.getvalue().rstrip("\n"), markup=False, highlight=False)
        return
    if fmt != "table":
        raise CliError(f"--format must be one of {', '.join(FORMATS)}", USAGE_EXIT_CODE)
    period = f"{invoice.period_start.isoformat()} .. {invoice.period_end.isoformat()}"
    status = f"{invoice.status} v{invoice.version}" if invoice.version else invoice.status
    supersedes = f", supersedes {invoice.supersedes}" if invoice.supersedes else ""
    console.print(f"invoice {invoice.invoice_id} ({status}{supersedes})")
    console.print(f"tenant {invoice.tenant}, period {period}, currency {invoice.currency}")
    table = Table(show_edge=False, pad_edge=False)
    for column, justify in (
        ("kind", "left"),
        ("model", "left"),
        ("priority", "left"),
        ("site", "left"),
        ("hours", "right"),
        ("unit", "left"),
        ("unit price", "right"),
        ("amount", "right"),
        ("records", "right"),
        ("note", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for line in invoice.lines:
        table.add_row(
            line.kind,
            line.model,
            line.priority or "",
            line.site_id,
            str(line.quantity),
            line.unit,
            _money(line.unit_price),
            str(line.amount),
            str(line.records),
            line.reason,
        )
    console.print(table)
    console.print(f"subtotal {invoice.subtotal} {invoice.currency}")
    console.print(f"credits  {invoice.credits} {invoice.currency}")
    console.print(f"total    {invoice.total} {invoice.currency}")
    if invoice.unpriced_records:
        console.print(
            f"{invoice.unpriced_records} unpriced record(s): see the unpriced lines' notes"
        )


# ---------------------------------------------------------------------- periods


def parse_instant(text: str, option: str) -> dt.datetime:
    """An ISO 8601 date or instant; UTC when it has no offset."""
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CliError(
            f"{option}: not an ISO 8601 date or time: {text!r}", USAGE_EXIT_CODE
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def parse_period(
    period: str | None, start: str | None, end: str | None
) -> tuple[dt.datetime, dt.datetime]:
    """``--period YYYY-MM`` (a calendar month, UTC) or ``--from``/``--to``."""
    if period is not None:
        if start is not None or end is not None:
            raise CliError("give --period or --from/--to, not both", USAGE_EXIT_CODE)
        match = _PERIOD.match(period)
        if match is None or not 1 <= int(match.group(2)) <= 12:
            raise CliError(f"--period must be YYYY-MM, got {period!r}", USAGE_EXIT_CODE)
        year, month = int(match.group(1)), int(match.group(2))
        first = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        following = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
        return first, following
    if start is None or end is None:
        raise CliError("give --period YYYY-MM, or both --from and --to", USAGE_EXIT_CODE)
    begin, finish = parse_instant(start, "--from"), parse_instant(end, "--to")
    if finish <= begin:
        raise CliError("--to must be after --from", USAGE_EXIT_CODE)
    return begin, finish


# ---------------------------------------------------------------------- requests


def _ask(nats_url: str | None, command: Contract, reply: type[R]) -> R:
    settings = resolve_settings(nats_url)

    async def talk() -> R:
        nc = await connect(settings.nats_url)
        try:
            return await request(
                nc, command, reply, namespace=settings.namespace, timeout=REQUEST_TIMEOUT_S
            )
        except CommandFailed as error:
            raise CliError(f"{error.error.code}: {error.error.message}") from None
        except ServiceUnavailable as error:
            raise CliError(
                f"the billing service is not answering ({error}): is `aifactory up` running?",
                USAGE_EXIT_CODE,
            ) from None
        finally:
            await nc.close()

    return asyncio.run(talk())


def _contract(contract: type[R], **fields: object) -> R:
    """The contract built from ``fields`` and validated (the constructor does not check)."""
    try:
        return msgspec.convert(fields, contract)
    except msgspec.ValidationError as error:
        raise CliError(f"invalid argument: {error}", USAGE_EXIT_CODE) from None


# ---------------------------------------------------------------------- commands


def invoice(
    *,
    tenant: Annotated[str | None, typer.Option("--tenant", help="The tenant.")] = None,
    period: Annotated[
        str | None, typer.Option("--period", help="Calendar month, YYYY-MM (UTC).")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="Period start (ISO 8601).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Period end, exclusive.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    issue: Annotated[
        bool, typer.Option("--issue", help="Issue it (a new version) instead of previewing.")
    ] = False,
    invoice_id: Annotated[
        str | None, typer.Option("--id", help="Print an issued invoice by id.")
    ] = None,
    actor: ActorOption = "operator:cli",
    nats_url: NatsUrl = None,
) -> None:
    """Print a tenant's invoice for a period (a draft unless --issue), or an issued one by --id."""
    with exit_on_error("invoice"):
        if fmt not in FORMATS:
            raise CliError(f"--format must be one of {', '.join(FORMATS)}", USAGE_EXIT_CODE)
        if invoice_id is not None:
            found = _ask(nats_url, _contract(GetInvoice, invoice_id=invoice_id), Invoice)
            render_invoice(stdout_console(), found, fmt)
            return
        if tenant is None:
            raise CliError("--tenant is required (or --id)", USAGE_EXIT_CODE)
        first, following = parse_period(period, start, end)
        fields = {"tenant": tenant, "period_start": first, "period_end": following}
        command: Contract = (
            _contract(IssueInvoice, **fields, actor=actor)
            if issue
            else _contract(PreviewInvoice, **fields)
        )
        render_invoice(stdout_console(), _ask(nats_url, command, Invoice), fmt)


@billing_app.command("set-rate")
def set_rate(
    *,
    model: Annotated[str, typer.Option("--model", help="Accelerator model (GB200, H100, ...).")],
    price: Annotated[str, typer.Option("--price", help="Unit price, a decimal (4.25).")],
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code.")],
    priority: Annotated[
        str | None, typer.Option("--priority", help="critical, standard or preemptible.")
    ] = None,
    node_hour: Annotated[
        bool, typer.Option("--node-hour", help="A node-hour rate for dedicated nodes.")
    ] = False,
    effective_from: Annotated[
        str | None, typer.Option("--from", help="Effective from (ISO 8601; default now).")
    ] = None,
    actor: ActorOption = "operator:cli",
    nats_url: NatsUrl = None,
) -> None:
    """Add a rate version: per accelerator-hour (model x priority) or per node-hour (model)."""
    with exit_on_error("billing set-rate"):
        try:
            unit_price = decimal.Decimal(price)
        except decimal.InvalidOperation:
            raise CliError(f"--price is not a decimal: {price!r}", USAGE_EXIT_CODE) from None
        when = (
            parse_instant(effective_from, "--from")
            if effective_from is not None
            else dt.datetime.now(dt.UTC)
        )
        command = _contract(
            SetRate,
            kind="node_hour" if node_hour else "accelerator_hour",
            model=model,
            priority=priority,
            unit_price=unit_price,
            currency=currency,
            effective_from=when,
            actor=actor,
        )
        rate = _ask(nats_url, command, RateView)
        stdout_console().print(
            f"{rate.rate_id}: {rate.unit_price} {rate.currency} per "
            f"{rate.kind.replace('_', '-')} from {rate.effective_from.isoformat()}"
        )


@billing_app.command("rates")
def rates(
    model: Annotated[str | None, typer.Option("--model")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """The rate card: every rate version with its effective range."""
    with exit_on_error("billing rates"):
        card = _ask(nats_url, _contract(ListRates, model=model), RateCard)
        console = stdout_console()
        if json_output:
            for rate in card.rates:
                console.print(msgspec.json.encode(rate).decode(), markup=False, highlight=False)
            return
        if not card.rates:
            console.print("no rates")
        for rate in card.rates:
            until = rate.effective_until.isoformat() if rate.effective_until else "now"
            console.print(
                f"{rate.kind:16} {rate.model:10} {rate.priority or '-':12} "
                f"{rate.unit_price} {rate.currency}  {rate.effective_from.isoformat()} .. {until}"
            )


@billing_app.command("account")
def account(
    tenant: Annotated[str, typer.Argument(help="Tenant id.")],
    currency: Annotated[str, typer.Option("--currency", help="ISO 4217 code.")],
    name: Annotated[str, typer.Option("--name")] = "",
    actor: ActorOption = "operator:cli",
    nats_url: NatsUrl = None,
) -> None:
    """Create or update a tenant's billing account."""
    with exit_on_error("billing account"):
        command = _contract(SetAccount, tenant=tenant, currency=currency, name=name, actor=actor)
        reply = _ask(nats_url, command, Account)
        verb = "created" if reply.created else "updated"
        stdout_console().print(f"account {reply.tenant} {verb} ({reply.currency})")


@billing_app.command("accounts")
def accounts(nats_url: NatsUrl = None) -> None:
    """Every tenant account."""
    with exit_on_error("billing accounts"):
        listed = _ask(nats_url, ListAccounts(), AccountList)
        console = stdout_console()
        if not listed.accounts:
            console.print("no accounts")
        for item in listed.accounts:
            console.print(f"{item.tenant:24} {item.currency} {item.name}")


@billing_app.command("invoices")
def invoices(
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Issued invoices, newest first."""
    with exit_on_error("billing invoices"):
        listed = _ask(nats_url, _contract(ListInvoices, tenant=tenant), InvoiceList)
        console = stdout_console()
        if not listed.invoices:
            console.print("no issued invoices")
        for item in listed.invoices:
            supersedes = f" supersedes {item.supersedes}" if item.supersedes else ""
            console.print(
                f"{item.invoice_id}  {item.total} {item.currency}  "
                f"issued {item.issued_at.isoformat()}{supersedes}"
            )


@billing_app.command("void")
def void(
    event_id: Annotated[str, typer.Argument(help="The consumed event's ce-id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the log).")],
    actor: ActorOption = "operator:cli",
    nats_url: NatsUrl = None,
) -> None:
    """Void a consumed event: the records it contributed to are reversed and re-derived."""
    with exit_on_error("billing void"):
        command = _contract(VoidEvent, event_id=event_id, reason=reason, actor=actor)
        reply = _ask(nats_url, command, EventVoided)
        if reply.facts_voided == 0:
            stdout_console().print(f"{reply.event_id} was already voided; nothing changed")
        else:
            stdout_console().print(
                f"{reply.event_id} voided: {reply.facts_voided} fact(s), "
                f"{reply.entries} ledger entr{'y' if reply.entries == 1 else 'ies'} appended"
            )
