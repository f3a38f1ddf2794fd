"""Read-only use cases: one job, a page of jobs, and why each waiting job waits.

``get_job`` and ``list_jobs`` read the database (what is committed); ``explain_queue``
reads the engine under the scheduler's transaction (so it is loaded and consistent)
and lists the waiting jobs in service order with their current blocking reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select

from aifactory.contracts.jobs.v1 import (
    ExplainQueue,
    GetJob,
    JobPage,
    JobView,
    ListJobs,
    NodeAllocation,
    QueueEntry,
    QueueExplanation,
)
from aifactory.scheduling.errors import SchedulingError
from aifactory.scheduling.scheduler import Scheduler, indices
from aifactory.scheduling.store import JOBS, spec_of, stored_allocations
from aifactory.store.uow import UnitOfWork


def job_view(row: Mapping[Any, Any]) -> JobView:
    """The contract view of a stored job row."""
    model, site, allocated = stored_allocations(row["placement"])
    return JobView(
        job_id=row["job_id"],
        spec=spec_of(row["spec"]),
        state=row["state"],
        reason=row["reason"],
        message=row["message"],
        attempt=row["attempt"],
        requeues=row["requeues"],
        model=model,
        site_id=site,
        allocations=[
            NodeAllocation(node_id=n, rack_id=r, accelerator_indices=indices(m))
            for n, r, m in allocated
        ],
        submitted_at=row["submitted_at"],
        updated_at=row["updated_at"],
    )


async def get_job(query: GetJob, uow: UnitOfWork, tenant: str | None) -> JobView:
    """One job (``not_found`` if unknown, or another tenant's)."""
    conn = await uow.session.connection()
    row = (await conn.execute(select(JOBS).where(JOBS.c.job_id == query.job_id))).mappings().first()
    if row is None or (tenant is not None and row["tenant"] != tenant):
        raise SchedulingError("not_found", f"no job {query.job_id}", {"job_id": query.job_id})
    return job_view(row)


async def list_jobs(query: ListJobs, uow: UnitOfWork, tenant: str | None) -> JobPage:
    """A page of jobs in id order (a tenant caller sees only its own)."""
    if tenant is not None and query.tenant not in (None, tenant):
        raise SchedulingError("unauthorized", f"tenant {tenant} may only list its own jobs")
    conn = await uow.session.connection()
    conditions = []
    wanted_tenant = query.tenant or tenant
    if wanted_tenant is not None:
        conditions.append(JOBS.c.tenant == wanted_tenant)
    if query.state is not None:
        conditions.append(JOBS.c.state == query.state)
    total = (
        await conn.execute(select(func.count()).select_from(JOBS).where(*conditions))
    ).scalar_one()
    page_query = select(JOBS).where(*conditions)
    if query.after is not None:
        page_query = page_query.where(JOBS.c.job_id > query.after)
    rows = list(
        (await conn.execute(page_query.order_by(JOBS.c.job_id).limit(query.limit + 1))).mappings()
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return JobPage(
        jobs=[job_view(r) for r in rows],
        total=total,
        next_after=rows[-1]["job_id"] if more and rows else None,
    )


async def explain_queue(
    query: ExplainQueue, uow: UnitOfWork, scheduler: Scheduler, tenant: str | None
) -> QueueExplanation:
    """Waiting jobs in service order, each with why it waits."""
    if tenant is not None and query.tenant not in (None, tenant):
        raise SchedulingError("unauthorized", f"tenant {tenant} may only see its own jobs")
    await scheduler.transaction(uow)
    wanted = query.tenant or tenant
    order = [j for j in scheduler.engine.queue_order() if wanted is None or j.tenant == wanted]
    entries = [
        QueueEntry(
            position=position,
            job_id=job.job_id,
            tenant=job.tenant,
            name=job.name,
            priority=job.priority,  # type: ignore[arg-type]
            accelerators=job.total,
            models=list(job.models),
            reason=job.reason,
            message=job.message[:1024],
            waiting_since=job.waiting_since or job.submitted_at,
        )
        for position, job in enumerate(order[: query.limit], start=1)
    ]
    return QueueExplanation(entries=entries, total=len(order))
