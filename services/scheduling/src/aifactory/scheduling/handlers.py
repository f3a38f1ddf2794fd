"""The scheduler's use cases: submissions, commands, workload reports, capacity and keys.

Each runs inside one unit of work: it takes the scheduler's transaction (the lock,
see scheduler.py), asks the engine, writes what changed and emits the events through
the outbox. The key-custody gate is asked *before* the lock (a network round trip
must not hold everyone up); its answer is applied under the lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import msgspec
import structlog
from sqlalchemy import delete, select

from aifactory.contracts.envelope import Envelope
from aifactory.contracts.health.v1 import NodeHealthChanged
from aifactory.contracts.inventory.v1 import (
    DedicationChanged,
    Node,
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
    JobAcceptance,
    JobAccepted,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobSpec,
    JobStarted,
    JobState,
    JobStatus,
    JobSubmitted,
    SetQuota,
    TenantQuota,
)
from aifactory.contracts.jobs.v1 import JobRejected as JobRejectedEvent
from aifactory.contracts.keys.v1 import (
    KeyDestroyed,
    KeyDestructionScheduled,
    KeyDisabled,
    KeyEnabled,
    KeyRevoked,
)
from aifactory.scheduling.custody import (
    CachedKeyCustody,
    KeyCustody,
    KeyCustodyUnavailable,
    KeyStatus,
    usable_sites,
)
from aifactory.scheduling.domain import (
    Job,
    Rejection,
    check_admission,
    job_from_spec,
    job_id_for,
)
from aifactory.scheduling.errors import JobRejected, SchedulingError, UnknownJob
from aifactory.scheduling.scheduler import Scheduler, Txn
from aifactory.scheduling.store import HOLDS, JOBS, NODES, QUOTAS, RACKS, SITES, upsert
from aifactory.store.store import Store
from aifactory.store.uow import UnitOfWork

log = structlog.get_logger(__name__)
_spec_encoder = msgspec.json.Encoder()
DEAD_KEY_STATES = ("revoked", "destruction_scheduled", "destroyed")
KeyUnusable = KeyRevoked | KeyDisabled | KeyDestructionScheduled | KeyDestroyed


class SchedulingHandlers:
    """Use cases over one ``Scheduler`` and a key-custody gate."""

    def __init__(self, scheduler: Scheduler, custody: KeyCustody) -> None:
        self.scheduler = scheduler
        self.custody = custody

    @property
    def engine(self) -> Any:
        """The scheduler's engine (replaced on reload, so always read through here)."""
        return self.scheduler.engine

    # ------------------------------------------------------------------ submission
    async def _key_status(self, spec: JobSpec) -> tuple[KeyStatus | None, bool]:
        if spec.dataset_key_id is None:
            return None, False
        try:
            return await self.custody.describe(spec.tenant, spec.dataset_key_id), False
        except KeyCustodyUnavailable as error:
            log.warning("key_custody_unavailable", tenant=spec.tenant, error=str(error))
            return None, True

    async def submit(self, spec: JobSpec, uow: UnitOfWork, *, via_event: bool) -> JobAcceptance:
        """Accept a job (placing or queueing it), return the existing one, or reject it."""
        job_id = job_id_for(spec.tenant, spec.client_job_id)
        status, pending = await self._key_status(spec)
        txn = await self.scheduler.transaction(uow)
        stored = None
        if job_id not in self.scheduler.engine.jobs and job_id not in txn.writer.new:
            stored = await self._stored(txn, job_id)
        return self._admit(txn, spec, job_id, status, pending, stored, via_event=via_event)

    async def on_job_submissions(
        self, envelopes: Sequence[Envelope[JobSubmitted]], uow: UnitOfWork
    ) -> None:
        """Jobs published to JetStream, a batch at a time: the same rules as ``submit_job``;
        refusals become ``job_rejected`` events. One query finds the ones already known."""
        keys: dict[tuple[str, str], tuple[KeyStatus | None, bool]] = {}
        for envelope in envelopes:
            spec = envelope.data.job
            if spec.dataset_key_id is not None and (spec.tenant, spec.dataset_key_id) not in keys:
                keys[(spec.tenant, spec.dataset_key_id)] = await self._key_status(spec)
        txn = await self.scheduler.transaction(uow)
        ids = [job_id_for(e.data.job.tenant, e.data.job.client_job_id) for e in envelopes]
        unknown = [i for i in ids if i not in self.scheduler.engine.jobs]
        stored = await self._stored_many(txn, unknown) if unknown else {}
        for envelope, job_id in zip(envelopes, ids, strict=True):
            spec = envelope.data.job
            status, pending = keys.get((spec.tenant, spec.dataset_key_id or ""), (None, False))
            txn.caused_by = envelope.event
            self._admit(txn, spec, job_id, status, pending, stored.get(job_id), via_event=True)
        txn.caused_by = None

    def _admit(  # noqa: PLR0917 - the submission and what was found about it before the lock
        self,
        txn: Txn,
        spec: JobSpec,
        job_id: str,
        status: KeyStatus | None,
        pending: bool,
        stored: Any,
        *,
        via_event: bool,
    ) -> JobAcceptance:
        engine = self.scheduler.engine
        existing = engine.jobs.get(job_id)
        if existing is None and job_id in txn.writer.new:
            existing = txn.writer.new[job_id][0]
        if existing is not None:
            return JobAcceptance(
                job_id=job_id,
                state=cast("JobState", existing.state),
                created=False,
                reason=existing.reason,
                message=existing.message[:1024],
            )
        if stored is not None:
            return JobAcceptance(
                job_id=job_id,
                state=stored["state"],
                created=False,
                reason=stored["reason"],
                message=stored["message"],
            )
        key_sites = None
        rejection: Rejection | None = None
        if status is not None:
            if not status.known or status.state in DEAD_KEY_STATES:
                rejection = Rejection(
                    "key_not_allowed",
                    f"dataset key {spec.dataset_key_id}: {status.refusal or status.state}",
                )
            else:
                sites = {s.site_id: s.jurisdiction for s in engine.index.sites.values()}
                key_sites = usable_sites(status, sites)
        rejection = rejection or check_admission(
            spec, engine.index, engine.quotas.get(spec.tenant), key_sites
        )
        if rejection is not None:
            log.info("job_rejected", job_id=job_id, reason=rejection.reason, why=rejection.message)
            if not via_event:
                raise JobRejected(job_id, rejection.reason, rejection.message)
            job = job_from_spec(spec, job_id, txn.now)
            job.state, job.reason, job.message = "rejected", rejection.reason, rejection.message
            txn.writer.created(job, _spec_encoder.encode(spec))
            txn.emit(
                JobRejectedEvent(
                    job_id=job_id,
                    tenant=spec.tenant,
                    client_job_id=spec.client_job_id,
                    reason=rejection.reason,
                    message=rejection.message[:1024],
                    rejected_at=txn.now,
                ),
                job,
            )
            return JobAcceptance(
                job_id=job_id,
                state="rejected",
                created=True,
                reason=rejection.reason,
                message=rejection.message[:1024],
            )
        job = job_from_spec(spec, job_id, txn.now)
        job.key_sites, job.key_pending = key_sites, pending
        txn.mutated = True
        outcomes = engine.submit(job, txn.now)
        txn.writer.created(job, _spec_encoder.encode(spec))
        txn.emit(JobAccepted(job_id=job_id, spec=spec, accepted_at=txn.now), job)
        self.scheduler.record(txn, outcomes)
        return JobAcceptance(
            job_id=job_id,
            state=cast("JobState", job.state),
            created=True,
            reason=job.reason,
            message=job.message[:1024],
        )

    async def _stored_many(self, txn: Txn, job_ids: Sequence[str]) -> dict[str, Any]:
        conn = await txn.uow.session.connection()
        found: dict[str, Any] = {}
        for start in range(0, len(job_ids), 500):
            query = select(
                JOBS.c.job_id, JOBS.c.tenant, JOBS.c.state, JOBS.c.reason, JOBS.c.message
            ).where(JOBS.c.job_id.in_(job_ids[start : start + 500]))
            for row in (await conn.execute(query)).mappings():
                found[row["job_id"]] = row
        return found

    async def _stored(self, txn: Txn, job_id: str) -> Any:
        conn = await txn.uow.session.connection()
        query = select(JOBS.c.tenant, JOBS.c.state, JOBS.c.reason, JOBS.c.message).where(
            JOBS.c.job_id == job_id
        )
        return (await conn.execute(query)).mappings().first()

    # ------------------------------------------------------------------ commands
    async def cancel_job(
        self, command: CancelJob, uow: UnitOfWork, tenant: str | None
    ) -> JobStatus:
        """Cancel a job; a tenant caller may only cancel its own."""
        txn = await self.scheduler.transaction(uow)
        job = self.scheduler.engine.jobs.get(command.job_id)
        if job is None or (tenant is not None and job.tenant != tenant):
            stored = await self._stored(txn, command.job_id)
            if stored is None or (tenant is not None and stored["tenant"] != tenant):
                raise SchedulingError(
                    "not_found", f"no job {command.job_id}", {"job_id": command.job_id}
                )
            state: JobState = stored["state"]
            return JobStatus(
                job_id=command.job_id, previous_state=state, state=state, changed=False
            )
        txn.mutated = True
        outcomes = self.scheduler.engine.cancel(job)
        self.scheduler.record(txn, outcomes)
        previous = cast("JobState", getattr(outcomes[0], "previous_state", "queued"))
        txn.emit(
            JobCancelled(
                job_id=job.job_id,
                tenant=job.tenant,
                previous_state=previous,
                reason=command.reason,
                actor=command.actor,
                cancelled_at=txn.now,
            ),
            job,
        )
        log.info("job_cancelled", job_id=job.job_id, previous=previous, actor=command.actor)
        return JobStatus(
            job_id=job.job_id, previous_state=previous, state="cancelled", changed=True
        )

    async def set_quota(self, command: SetQuota, uow: UnitOfWork) -> TenantQuota:
        """Set a tenant's quota for a model (this also makes the tenant known)."""
        txn = await self.scheduler.transaction(uow)
        txn.mutated = True
        limits = self.scheduler.engine.set_quota(
            command.tenant, command.model, command.accelerators
        )
        await upsert(
            await uow.session.connection(),
            QUOTAS,
            [
                {
                    "tenant": command.tenant,
                    "model": command.model,
                    "accelerators": command.accelerators,
                }
            ],
            ["tenant", "model"],
        )
        log.info(
            "quota_set", tenant=command.tenant, model=command.model, limit=command.accelerators
        )
        return TenantQuota(tenant=command.tenant, limits=limits)

    # ------------------------------------------------------------------ workload reports
    async def _reported(self, txn: Txn, job_id: str, tenant: str) -> Job | None:
        job: Job | None = self.scheduler.engine.jobs.get(job_id)
        if job is not None:
            if job.tenant != tenant:
                raise UnknownJob(f"job {job_id} belongs to another tenant than {tenant}")
            return job
        stored = await self._stored(txn, job_id)
        if stored is None or stored["tenant"] != tenant:
            raise UnknownJob(f"no job {job_id} of tenant {tenant} was ever submitted")
        return None  # a late or repeated report for a job that already ended

    async def on_job_started(self, envelope: Envelope[JobStarted], uow: UnitOfWork) -> None:
        """The workload started a job: placed -> running."""
        report = envelope.data
        txn = await self.scheduler.transaction(uow)
        job = await self._reported(txn, report.job_id, report.tenant)
        if job is not None:
            txn.mutated = True
            self.scheduler.record(txn, self.scheduler.engine.report_started(job, report.attempt))

    async def on_job_finished(self, envelope: Envelope[JobFinished], uow: UnitOfWork) -> None:
        """The workload finished a job: its accelerators free, the queue moves."""
        report = envelope.data
        await self._ended(uow, report.job_id, report.tenant, report.attempt, "finished")

    async def on_job_failed(self, envelope: Envelope[JobFailed], uow: UnitOfWork) -> None:
        """The workload's job failed: its accelerators free, the queue moves."""
        report = envelope.data
        await self._ended(uow, report.job_id, report.tenant, report.attempt, "failed")

    async def _ended(
        self, uow: UnitOfWork, job_id: str, tenant: str, attempt: int | None, state: str
    ) -> None:
        txn = await self.scheduler.transaction(uow)
        job = await self._reported(txn, job_id, tenant)
        if job is not None:
            txn.mutated = True
            self.scheduler.record(txn, self.scheduler.engine.report_ended(job, attempt, state))

    # ------------------------------------------------------------------ capacity view
    async def on_site(
        self, envelope: Envelope[SiteRegistered | SiteUpdated], uow: UnitOfWork
    ) -> None:
        """A site appeared or its jurisdiction changed."""
        data = envelope.data
        txn = await self.scheduler.transaction(uow)
        engine = self.scheduler.engine
        if isinstance(data, SiteRegistered):
            jurisdiction = data.jurisdiction
        else:
            jurisdiction = next(
                (str(c.after) for c in data.changes if c.field == "jurisdiction"),
                engine.index.sites[data.site_id].jurisdiction
                if data.site_id in engine.index.sites
                else "",
            )
        txn.mutated = True
        engine.index.upsert_site(data.site_id, jurisdiction)
        engine.request_pass()
        await upsert(
            await uow.session.connection(),
            SITES,
            [{"site_id": data.site_id, "jurisdiction": jurisdiction}],
            ["site_id"],
        )

    async def on_rack(
        self, envelope: Envelope[RackRegistered | RackUpdated], uow: UnitOfWork
    ) -> None:
        """A rack appeared or its NVLink domain size changed."""
        data = envelope.data
        txn = await self.scheduler.transaction(uow)
        engine = self.scheduler.engine
        rack = engine.index.racks.get(data.rack_id)
        size = rack.domain_size if rack is not None else 0
        if isinstance(data, RackRegistered):
            size = data.nvlink_domain_size
        else:
            for change in data.changes:
                if change.field == "nvlink_domain_size" and isinstance(change.after, int):
                    size = change.after
        txn.mutated = True
        engine.index.upsert_rack(data.rack_id, data.site_id, size)
        await upsert(
            await uow.session.connection(),
            RACKS,
            [{"rack_id": data.rack_id, "site_id": data.site_id, "domain_size": size}],
            ["rack_id"],
        )

    async def _node(self, txn: Txn, node: Node) -> None:
        engine = self.scheduler.engine
        txn.mutated = True
        outcomes = engine.upsert_node(
            node.node_id,
            site_id=node.site_id,
            rack_id=node.rack_id,
            model=node.model,
            capacity=node.accelerator_count,
            state=node.state,
            dedicated=node.tenant,
            now=txn.now,
        )
        await self._write_node(txn, node.node_id)
        self.scheduler.record(txn, outcomes)

    async def _write_node(self, txn: Txn, node_id: str) -> None:
        slot = self.scheduler.engine.index.nodes[node_id]
        await upsert(
            await txn.uow.session.connection(),
            NODES,
            [
                {
                    "node_id": slot.node_id,
                    "site_id": slot.site_id,
                    "rack_id": slot.rack_id,
                    "model": slot.model,
                    "capacity": slot.capacity,
                    "state": slot.state,
                    "dedicated": slot.dedicated,
                    "healthy": slot.healthy,
                }
            ],
            ["node_id"],
        )

    async def on_node(
        self, envelope: Envelope[NodeRegistered | NodeUpdated], uow: UnitOfWork
    ) -> None:
        """A node appeared or its hardware / placement changed."""
        txn = await self.scheduler.transaction(uow)
        await self._node(txn, envelope.data.node)

    async def on_node_state_changed(
        self, envelope: Envelope[NodeStateChanged], uow: UnitOfWork
    ) -> None:
        """A node's admin state changed: failed / draining / ... nodes lose their jobs."""
        data = envelope.data
        txn = await self.scheduler.transaction(uow)
        engine = self.scheduler.engine
        txn.mutated = True
        if data.node_id not in engine.index.nodes:
            if data.rack_id not in engine.index.racks:
                engine.index.upsert_rack(data.rack_id, data.site_id, 0)
            outcomes = engine.upsert_node(
                data.node_id,
                site_id=data.site_id,
                rack_id=data.rack_id,
                model=data.model,
                capacity=data.accelerator_count,
                state=data.to_state,
                dedicated=data.tenant,
                now=txn.now,
            )
        else:
            outcomes = engine.set_node_state(data.node_id, data.to_state, data.reason, txn.now)
        log.info(
            "node_state_applied",
            node_id=data.node_id,
            state=data.to_state,
            requeued=[o.job.job_id for o in outcomes],
        )
        await self._write_node(txn, data.node_id)
        self.scheduler.record(txn, outcomes)

    async def on_dedication_changed(
        self, envelope: Envelope[DedicationChanged], uow: UnitOfWork
    ) -> None:
        """Nodes were dedicated to a tenant (other tenants' jobs move off) or returned."""
        data = envelope.data
        txn = await self.scheduler.transaction(uow)
        engine = self.scheduler.engine
        txn.mutated = True
        for node_id in data.node_ids:
            if node_id not in engine.index.nodes:
                continue
            self.scheduler.record(txn, engine.set_dedication(node_id, data.tenant, txn.now))
            await self._write_node(txn, node_id)

    async def on_node_health(self, envelope: Envelope[NodeHealthChanged], uow: UnitOfWork) -> None:
        """A health verdict: failed / unreachable nodes take no new work."""
        data = envelope.data
        txn = await self.scheduler.transaction(uow)
        engine = self.scheduler.engine
        if data.node_id not in engine.index.nodes:
            log.info("health_verdict_for_unknown_node", node_id=data.node_id)
            return
        txn.mutated = True
        engine.set_health(data.node_id, healthy=data.verdict not in ("failed", "unreachable"))
        await self._write_node(txn, data.node_id)

    # ------------------------------------------------------------------ keys
    def _forget(self, tenant: str, key_id: str) -> None:
        if isinstance(self.custody, CachedKeyCustody):
            self.custody.forget(tenant, key_id)

    async def on_key_unusable(self, envelope: Envelope[KeyUnusable], uow: UnitOfWork) -> None:
        """A dataset key was revoked, disabled or destroyed: hold and preempt its jobs."""
        data = envelope.data
        self._forget(data.tenant, data.key_id)
        state = {
            KeyRevoked: "revoked",
            KeyDisabled: "disabled",
            KeyDestructionScheduled: "destruction_scheduled",
            KeyDestroyed: "destroyed",
        }[type(data)]
        txn = await self.scheduler.transaction(uow)
        txn.mutated = True
        await upsert(
            await uow.session.connection(),
            HOLDS,
            [{"tenant": data.tenant, "key_id": data.key_id, "state": state, "since": data.at}],
            ["tenant", "key_id"],
        )
        outcomes = self.scheduler.engine.hold_key(data.tenant, data.key_id, f"is {state}", txn.now)
        log.info(
            "key_hold",
            tenant=data.tenant,
            key_id=data.key_id,
            state=state,
            preempted=[o.job.job_id for o in outcomes if o.job.state == "queued"],
        )
        self.scheduler.record(txn, outcomes)

    async def on_key_enabled(self, envelope: Envelope[KeyEnabled], uow: UnitOfWork) -> None:
        """A disabled key is usable again: its jobs may be placed."""
        data = envelope.data
        self._forget(data.tenant, data.key_id)
        txn = await self.scheduler.transaction(uow)
        txn.mutated = True
        conn = await uow.session.connection()
        await conn.execute(
            delete(HOLDS).where(HOLDS.c.tenant == data.tenant, HOLDS.c.key_id == data.key_id)
        )
        self.scheduler.engine.lift_key(data.tenant, data.key_id)

    async def recheck_pending_keys(self, store: Store) -> int:
        """Ask the key service again for jobs queued with ``key_check_pending``."""
        engine = self.scheduler.engine
        wanted = sorted(
            {(j.tenant, j.key_id) for j in engine.jobs.values() if j.key_pending and j.key_id}
        )
        answers: dict[tuple[str, str], KeyStatus] = {}
        for tenant, key_id in wanted:
            try:
                answers[(tenant, key_id)] = await self.custody.describe(tenant, key_id)
            except KeyCustodyUnavailable:
                continue
        if not answers:
            return 0
        async with store.unit_of_work() as uow:
            txn = await self.scheduler.transaction(uow)
            engine = self.scheduler.engine
            sites = {s.site_id: s.jurisdiction for s in engine.index.sites.values()}
            resolved: list[Job] = []
            for job in engine.jobs.values():
                status = answers.get((job.tenant, job.key_id or ""))
                if job.key_pending and status is not None:
                    job.key_pending = False
                    job.key_sites = (
                        usable_sites(status, sites)
                        if status.known and status.state not in DEAD_KEY_STATES
                        else frozenset()
                    )
                    resolved.append(job)
            if resolved:
                txn.mutated = True
                engine.pass_pending = True
                txn.writer.touched(resolved)
            return len(resolved)
