"""The demo's closing summary and every tenant's invoice.

The summary gives the workload's figures (jobs submitted, placed, finished, requeued
by reason, refused; jobs per minute; submit -> placed latency p50 / p95 / p99 / max),
the fault timeline, and the bus traffic. Then each tenant's invoice for the demo
period is issued (``IssueInvoice``) and printed with ``aifactory invoice``'s renderer;
when the billing service is not running the summary says invoices are unavailable.
"""

from __future__ import annotations

import datetime as dt

from nats.aio.client import Client
from rich.console import Console

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.cli.demo.faults import FaultTimeline
from aifactory.cli.demo.observer import Observer
from aifactory.cli.demo.tenants import ACTOR, DemoTenant
from aifactory.cli.demo.workload import WorkloadStats
from aifactory.contracts.billing.v1 import Invoice, IssueInvoice

INVOICE_TIMEOUT_S = 30.0


def print_summary(
    out: Console, stats: WorkloadStats, timeline: FaultTimeline, observer: Observer
) -> None:
    """The workload's figures, the fault timeline and the bus traffic."""
    seconds = stats.generating_s()
    out.print("")
    out.print("== demo summary ==")
    out.print(f"workload: {seconds:.1f}s of generated load")
    by_tenant = ", ".join(f"{t} {n}" for t, n in sorted(stats.submitted_by_tenant.items()))
    out.print(f"jobs submitted: {stats.submitted} ({by_tenant})")
    out.print(
        f"jobs placed: {stats.placed_first} first placements, {stats.placements} placements "
        f"in all; finished: {stats.finished}"
    )
    requeued = ", ".join(f"{r} {n}" for r, n in stats.requeued.most_common()) or "none"
    out.print(
        f"requeued: {sum(stats.requeued.values())} ({requeued}); preempted: {stats.preempted}"
    )
    queued = ", ".join(f"{r} {n}" for r, n in stats.queued.most_common()) or "none"
    out.print(f"queued on the way: {queued}")
    refused = ", ".join(f"{r} {n}" for r, n in stats.refused.most_common()) or "none"
    out.print(f"refused at submission: {refused}")
    out.print(
        f"throughput: {stats.per_minute(stats.submitted):.0f} jobs/min submitted, "
        f"{stats.per_minute(stats.placed_first):.0f} jobs/min placed"
    )
    out.print(
        f"submit -> placed latency: p50 {stats.latency_ms(0.5):.1f} ms, "
        f"p95 {stats.latency_ms(0.95):.1f} ms, p99 {stats.latency_ms(0.99):.1f} ms, "
        f"max {max(stats.latencies_ms, default=0.0):.1f} ms ({len(stats.latencies_ms)} jobs)"
    )
    out.print(
        f"  of which placed on arrival (never queued): p50 {stats.direct_latency_ms(0.5):.1f} ms, "
        f"p99 {stats.direct_latency_ms(0.99):.1f} ms ({len(stats.direct_latencies_ms)} jobs)"
    )
    out.print(f"bus: {observer.messages} messages, {observer.events} events")
    out.print("faults and reactions:")
    for at, text in timeline.entries:
        out.print(f"  {at:6.1f}s  {text}")


async def issue_invoices(
    nc: Client,
    namespace: Namespace,
    tenants: tuple[DemoTenant, ...],
    *,
    period_start: dt.datetime,
    period_end: dt.datetime,
) -> tuple[list[Invoice], list[str]]:
    """Issue each tenant's invoice for the period: the invoices and the problems met."""
    invoices: list[Invoice] = []
    problems: list[str] = []
    for tenant in tenants:
        try:
            invoices.append(
                await request(
                    nc,
                    IssueInvoice(
                        tenant=tenant.tenant,
                        period_start=period_start,
                        period_end=period_end,
                        actor=ACTOR,
                    ),
                    Invoice,
                    namespace=namespace,
                    timeout=INVOICE_TIMEOUT_S,
                )
            )
        except (CommandFailed, ServiceUnavailable) as error:
            problems.append(f"invoice for {tenant.tenant} unavailable: {error}")
    return invoices, problems
