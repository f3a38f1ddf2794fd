"""Composition root of the scheduling service: the only module that touches the bus.

``build_service(settings)`` wires the use cases to their commands, queries and durable
consumers (inventory's capacity events, health verdicts, key events, job submissions
and workload reports), the key-custody gate (the keys service over NATS, cached) and
the background tasks (scheduling passes, key re-checks), and returns a
``SchedulingService`` ready to ``start()`` / ``run()``. ``SchedulingError`` becomes a
typed error reply here; nothing connects until the service starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from nats.aio.client import Client

from aifactory.bus.rpc import (
    CommandFailed,
    CommandRejected,
    RequestContext,
    ServiceUnavailable,
    request,
)
from aifactory.bus.service import Service
from aifactory.bus.settings import Namespace
from aifactory.bus.topology import ConsumerSpec
from aifactory.contracts.base import Contract
from aifactory.contracts.health.v1 import NodeHealthChanged
from aifactory.contracts.inventory.v1 import (
    DedicationChanged,
    NodeRegistered,
    NodeStateChanged,
    NodeUpdated,
    RackRegistered,
    RackUpdated,
    SiteRegistered,
    SiteUpdated,
)
from aifactory.contracts.jobs.v1 import (
    CancelJob,
    ExplainQueue,
    GetJob,
    JobAcceptance,
    JobFailed,
    JobFinished,
    JobPage,
    JobStarted,
    JobStatus,
    JobSubmitted,
    JobView,
    ListJobs,
    QueueExplanation,
    SetQuota,
    SubmitJob,
    TenantQuota,
)
from aifactory.contracts.keys.v1 import (
    Caller,
    DescribeKey,
    KeyDescription,
    KeyDestroyed,
    KeyDestructionScheduled,
    KeyDisabled,
    KeyEnabled,
    KeyRevoked,
)
from aifactory.contracts.registry import spec_of
from aifactory.scheduling import queries
from aifactory.scheduling.config import SERVICE, SchedulingSettings
from aifactory.scheduling.custody import (
    CachedKeyCustody,
    KeyCustody,
    KeyCustodyUnavailable,
    KeyStatus,
    StaticKeyCustody,
)
from aifactory.scheduling.errors import SchedulingError
from aifactory.scheduling.handlers import SchedulingHandlers
from aifactory.scheduling.scheduler import Scheduler
from aifactory.store.store import Store
from aifactory.store.uow import UnitOfWork

log = structlog.get_logger(__name__)
C = TypeVar("C", bound=Contract)
R = TypeVar("R", bound=Contract)


def _filters(*types: type[Contract]) -> tuple[str, ...]:
    return tuple(spec_of(t).subject_filter for t in types)


INVENTORY_EVENTS = ConsumerSpec(
    stream="FACTORY_INVENTORY",
    durable="scheduling-inventory",
    filter_subjects=_filters(
        SiteRegistered,
        SiteUpdated,
        RackRegistered,
        RackUpdated,
        NodeRegistered,
        NodeUpdated,
        NodeStateChanged,
        DedicationChanged,
    ),
    description="scheduling: the capacity view (sites, racks, nodes, states, dedications)",
)
HEALTH_VERDICTS = ConsumerSpec(
    stream="FACTORY_HEALTH",
    durable="scheduling-health",
    filter_subjects=_filters(NodeHealthChanged),
    description="scheduling: unhealthy nodes take no new work",
)
KEY_EVENTS = ConsumerSpec(
    stream="FACTORY_KEYS",
    durable="scheduling-keys",
    filter_subjects=_filters(
        KeyRevoked, KeyDisabled, KeyDestructionScheduled, KeyDestroyed, KeyEnabled
    ),
    description="scheduling: revoked / disabled keys hold and preempt their jobs",
)
SUBMISSIONS = ConsumerSpec(
    stream="FACTORY_JOBS",
    durable="scheduling-submissions",
    filter_subjects=_filters(JobSubmitted),
    description="scheduling: jobs submitted by other systems",
)
WORKLOAD_REPORTS = ConsumerSpec(
    stream="FACTORY_JOBS",
    durable="scheduling-reports",
    filter_subjects=_filters(JobStarted, JobFinished, JobFailed),
    max_deliver=3,
    description="scheduling: started / finished / failed reports (unknown jobs: dead letters)",
)


class NatsKeyCustody:
    """Asks the keys service over NATS (``describe_key``) whether and where a key is usable."""

    def __init__(
        self,
        nc: Callable[[], Client],
        namespace: Namespace,
        *,
        principal: str,
        timeout_s: float = 2.0,
    ) -> None:
        self._nc = nc
        self.namespace = namespace
        self.caller = Caller(principal=principal, site="control-plane")
        self.timeout_s = timeout_s

    async def describe(self, tenant: str, key_id: str) -> KeyStatus:
        """Describe the key; a refusal is a status with its reason, silence is unavailable."""
        try:
            described = await request(
                self._nc(),
                DescribeKey(tenant=tenant, key_id=key_id, caller=self.caller),
                KeyDescription,
                namespace=self.namespace,
                source=f"/aifactory/{SERVICE}",
                timeout=self.timeout_s,
            )
        except ServiceUnavailable as error:
            raise KeyCustodyUnavailable(str(error)) from None
        except CommandFailed as error:
            if error.error.code in ("unavailable", "internal"):
                raise KeyCustodyUnavailable(error.error.message) from None
            return KeyStatus("unknown", refusal=error.error.details.get("reason", error.error.code))
        return KeyStatus(
            described.state,
            allowed_sites=frozenset(described.policy.allowed_sites),
            allowed_jurisdictions=frozenset(described.policy.allowed_jurisdictions),
        )


class SchedulingService(Service):
    """The kit's ``Service`` plus the scheduler's background tasks."""

    def __init__(
        self, settings: SchedulingSettings, scheduler: Scheduler, handlers: SchedulingHandlers
    ) -> None:
        super().__init__(
            SERVICE,
            bus_settings=settings.bus,
            store=Store(settings.database_url),
            metrics_port=settings.metrics_port,
            authorize=authorize,
        )
        self.settings = settings
        self.scheduler = scheduler
        self.handlers = handlers

    async def start(self) -> None:
        """Start the kit's service, then the pass runner and the key re-checks."""
        await super().start()
        self.scheduler.on_commit = self._wake_relay
        self._tasks.append(
            asyncio.create_task(self.scheduler.run_passes(self.store), name="scheduling-passes")
        )
        self._tasks.append(asyncio.create_task(self._recheck_keys(), name="scheduling-keys"))

    async def stop(self) -> None:
        """Stop the service, making sure every task really ended first.

        A consumer blocked in nats-py's ``fetch`` can lose a cancellation (Python 3.11's
        ``wait_for`` turns a cancel that races its timeout into ``TimeoutError``, which
        the consumer loop treats as an idle poll), so the tasks are cancelled again
        until they are done; then the kit's ``stop`` closes everything.
        """
        for _ in range(100):
            pending = [task for task in self._tasks if not task.done()]
            if not pending:
                break
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.1)
        await super().stop()

    async def _recheck_keys(self) -> None:
        while True:
            await asyncio.sleep(self.settings.key_recheck_s)
            try:
                resolved = await self.handlers.recheck_pending_keys(self.store)
            except Exception:
                log.exception("key_recheck_failed")
                continue
            if resolved:
                log.info("key_checks_resolved", jobs=resolved)
                self.scheduler.pass_wanted.set()


async def authorize(ctx: RequestContext) -> None:
    """Tenants may submit, cancel and read their own jobs; only operators set quotas."""
    if ctx.tenant and ctx.spec.type is SetQuota:
        raise CommandRejected(
            "unauthorized",
            f"tenant {ctx.tenant} may not set quotas; ask a factory operator",
            {"tenant": ctx.tenant},
        )


def _rejecting(
    handler: Callable[[C, UnitOfWork, str | None], Awaitable[R]],
) -> Callable[[C, UnitOfWork, RequestContext], Awaitable[R]]:
    """Adapt a use case to the bus: ``SchedulingError`` -> ``CommandRejected`` (typed reply)."""

    async def endpoint(command: C, uow: UnitOfWork, ctx: RequestContext) -> R:
        try:
            return await handler(command, uow, ctx.tenant or None)
        except SchedulingError as exc:
            raise CommandRejected(exc.code, exc.message, exc.details) from None

    return endpoint


def build_service(
    settings: SchedulingSettings, *, custody: KeyCustody | None = None
) -> SchedulingService:
    """The scheduling service, wired and not yet started (``custody`` overrides the gate)."""
    scheduler = Scheduler(max_requeues=settings.max_requeues)
    holder: list[Service] = []
    if custody is None:
        if settings.key_custody == "off":
            custody = StaticKeyCustody(allow_unknown=True)
        else:
            custody = CachedKeyCustody(
                NatsKeyCustody(
                    lambda: holder[0].bus.nc,
                    settings.bus.namespace,
                    principal=settings.key_principal,
                ),
                ttl_s=settings.key_cache_s,
            )
    handlers = SchedulingHandlers(scheduler, custody)
    service = SchedulingService(settings, scheduler, handlers)
    holder.append(service)

    async def submit(command: SubmitJob, uow: UnitOfWork, tenant: str | None) -> JobAcceptance:
        if tenant is not None and tenant != command.job.tenant:
            raise SchedulingError(
                "unauthorized",
                f"tenant {tenant} may not submit jobs for {command.job.tenant}",
                {"tenant": tenant},
            )
        return await handlers.submit(command.job, uow, via_event=False)

    async def cancel(command: CancelJob, uow: UnitOfWork, tenant: str | None) -> JobStatus:
        return await handlers.cancel_job(command, uow, tenant)

    async def set_quota(command: SetQuota, uow: UnitOfWork, _tenant: str | None) -> TenantQuota:
        return await handlers.set_quota(command, uow)

    async def explain(query: ExplainQueue, uow: UnitOfWork, tenant: str | None) -> QueueExplanation:
        return await queries.explain_queue(query, uow, scheduler, tenant)

    async def get_job(query: GetJob, uow: UnitOfWork, tenant: str | None) -> JobView:
        return await queries.get_job(query, uow, tenant)

    async def list_jobs(query: ListJobs, uow: UnitOfWork, tenant: str | None) -> JobPage:
        return await queries.list_jobs(query, uow, tenant)

    service.command(SubmitJob, _rejecting(submit))
    service.command(CancelJob, _rejecting(cancel))
    service.command(SetQuota, _rejecting(set_quota))
    service.command(GetJob, _rejecting(get_job))
    service.command(ListJobs, _rejecting(list_jobs))
    service.command(ExplainQueue, _rejecting(explain))
    service.consume(
        INVENTORY_EVENTS,
        handlers={
            SiteRegistered: handlers.on_site,
            SiteUpdated: handlers.on_site,
            RackRegistered: handlers.on_rack,
            RackUpdated: handlers.on_rack,
            NodeRegistered: handlers.on_node,
            NodeUpdated: handlers.on_node,
            NodeStateChanged: handlers.on_node_state_changed,
            DedicationChanged: handlers.on_dedication_changed,
        },
    )
    service.consume(HEALTH_VERDICTS, handlers={NodeHealthChanged: handlers.on_node_health})
    service.consume(
        KEY_EVENTS,
        handlers={
            KeyRevoked: handlers.on_key_unusable,
            KeyDisabled: handlers.on_key_unusable,
            KeyDestructionScheduled: handlers.on_key_unusable,
            KeyDestroyed: handlers.on_key_unusable,
            KeyEnabled: handlers.on_key_enabled,
        },
    )
    service.consume(SUBMISSIONS, batch_handler=handlers.on_job_submissions, accept=(JobSubmitted,))
    service.consume(
        WORKLOAD_REPORTS,
        handlers={
            JobStarted: handlers.on_job_started,
            JobFinished: handlers.on_job_finished,
            JobFailed: handlers.on_job_failed,
        },
    )
    return service
