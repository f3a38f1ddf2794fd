"""Composition root of the billing service: the only module that touches the bus.

``build_service(settings)`` wires the use cases to their commands and queries and to
three durable batch consumers: the job lifecycle (``billing-jobs``), node failures,
models and dedications from inventory (``billing-inventory``) and health verdicts
(``billing-health``). Each fetched batch is applied in one transaction; the fact
tables, keyed by the consumed events' ids, are the inbox (exactly once), so the
kit's own inbox claim is switched off. Nothing connects until the service starts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from aifactory.billing.config import SERVICE, BillingSettings
from aifactory.billing.facts import HEALTH_EVENTS, INVENTORY_EVENTS, JOB_EVENTS
from aifactory.billing.handlers import BillingHandlers
from aifactory.bus.service import Service
from aifactory.bus.topology import ConsumerSpec
from aifactory.contracts.base import Contract
from aifactory.contracts.billing.v1 import (
    GetInvoice,
    IssueInvoice,
    ListAccounts,
    ListInvoices,
    ListRates,
    PreviewInvoice,
    SetAccount,
    SetRate,
    VoidEvent,
)
from aifactory.contracts.registry import spec_of
from aifactory.store.store import Store


def _filters(types: tuple[type[Contract], ...]) -> tuple[str, ...]:
    return tuple(spec_of(t).subject_filter for t in types)


JOB_LIFECYCLE = ConsumerSpec(
    stream="FACTORY_JOBS",
    durable="billing-jobs",
    filter_subjects=_filters(JOB_EVENTS),
    description="billing: placements, starts and endings of job attempts (metering)",
)
NODE_EVENTS = ConsumerSpec(
    stream="FACTORY_INVENTORY",
    durable="billing-inventory",
    filter_subjects=_filters(INVENTORY_EVENTS),
    description="billing: node models, failures (stop metering) and dedications (node-hours)",
)
HEALTH_VERDICTS = ConsumerSpec(
    stream="FACTORY_HEALTH",
    durable="billing-health",
    filter_subjects=_filters(HEALTH_EVENTS),
    description="billing: failed / unreachable verdicts stop metering at the failure instant",
)

USE_KIT_INBOX = False
"""The ingest consumers run without the kit's inbox: the fact tables are keyed by the
consumed events' ids and ``ledger.BatchApplier`` inserts into them first, in the batch's
transaction, learning from ``RETURNING`` which events are new (the same guarantee, one
statement and one table fewer)."""


def build_service(
    settings: BillingSettings, *, clock: Callable[[], dt.datetime] | None = None
) -> Service:
    """The billing service, wired and not yet started (``clock``: tests only)."""
    handlers = BillingHandlers(
        credit_window_s=settings.credit_window_s, publish_usage=settings.publish_usage
    )
    if clock is not None:
        handlers.clock = clock
    service = Service(
        SERVICE,
        bus_settings=settings.bus,
        store=Store(settings.database_url),
        metrics_port=settings.metrics_port,
    )
    options: dict[str, Any] = (
        {"backoff_s": settings.retry_backoff_s} if settings.retry_backoff_s else {}
    )
    for spec, accepted in (
        (JOB_LIFECYCLE, JOB_EVENTS),
        (NODE_EVENTS, INVENTORY_EVENTS),
        (HEALTH_VERDICTS, HEALTH_EVENTS),
    ):
        service.consume(
            dataclasses.replace(spec, ack_wait_s=float(settings.ack_wait_s)),
            batch_handler=handlers.ingest,
            accept=accepted,
            batch_size=settings.batch_size,
            use_inbox=USE_KIT_INBOX,
            **options,
        )
    service.command(SetRate, handlers.set_rate)
    service.command(ListRates, handlers.list_rates)
    service.command(SetAccount, handlers.set_account)
    service.command(ListAccounts, handlers.list_accounts)
    service.command(PreviewInvoice, handlers.preview_invoice)
    service.command(IssueInvoice, handlers.issue_invoice)
    service.command(GetInvoice, handlers.get_invoice)
    service.command(ListInvoices, handlers.list_invoices)
    service.command(VoidEvent, handlers.void_event)
    return service
