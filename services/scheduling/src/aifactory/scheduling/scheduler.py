"""One writer at a time: the in-memory engine kept equal to the database.

Every use case that reads or changes scheduling state calls ``transaction(uow)``
first. On SQLite it first takes the database's single write lock (the bus kit's
consumers hold it already: they claim inbox ids before the handlers run), so the two
locks are always taken in the same order. It then takes the scheduler's lock and
ties it to the unit of work's database transaction: the lock is released by
SQLAlchemy's ``after_commit`` / ``after_soft_rollback`` events of that session, so
no other handler sees the engine between a decision and its commit. The handlers of
one consumer batch share the unit of work and take the lock once. If a transaction
that changed the engine rolls back, the engine is marked stale and the next
transaction rebuilds it from the database (which is also how the first transaction
after a start loads it): memory never holds a decision the database does not.

``record`` marks the jobs an outcome touched (written in two executemany statements
when the transaction commits, from its ``before_commit`` event) and emits the events
through the outbox; ``run_passes`` is the background task that runs a scheduling
pass, in its own transaction, whenever a committed change asked for one (capacity
freed, quota raised, key re-enabled, restart).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from aifactory.contracts.cloudevents import CloudEvent, utcnow
from aifactory.contracts.jobs.v1 import (
    JobAbandoned,
    JobPlaced,
    JobPreempted,
    JobQueued,
    JobRequeued,
    NodeAllocation,
    PriorityClass,
    QueueReason,
    RequeueReason,
)
from aifactory.scheduling.domain import Job
from aifactory.scheduling.engine import (
    Abandoned,
    Engine,
    Outcome,
    Placed,
    Preempted,
    Queued,
    Requeued,
)
from aifactory.scheduling.store import JobWriter, load
from aifactory.store.store import Store
from aifactory.store.uow import NewEvent, UnitOfWork

log = structlog.get_logger(__name__)
_TAKE_SQLITE_WRITE_LOCK = text("UPDATE scheduling_sites SET site_id = site_id WHERE 0 = 1")


@dataclass(eq=False)
class Txn:
    """The scheduler's view of one unit of work."""

    uow: UnitOfWork
    now: dt.datetime
    writer: JobWriter = field(default_factory=JobWriter)
    mutated: bool = False
    done: bool = False

    caused_by: CloudEvent | None = None
    """The event being handled (its trace continues in what this transaction emits)."""

    def emit(self, data: Any, job: Job) -> None:
        """Queue a job event (tenant-scoped, ``ce-subject`` = job id) in the outbox."""
        self.uow.emit(
            NewEvent(data, tenant=job.tenant, subject=job.job_id), caused_by=self.caused_by
        )


def indices(mask: int) -> list[int]:
    """The accelerator indices set in ``mask``."""
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


def allocations(job: Job) -> list[NodeAllocation]:
    """A placed job's nodes, racks and accelerator indices."""
    assert job.placement is not None
    racks = dict(zip(job.placement.node_ids, job.placement.rack_ids, strict=False))
    return [
        NodeAllocation(
            node_id=node_id, rack_id=racks.get(node_id, ""), accelerator_indices=indices(mask)
        )
        for node_id, mask in sorted(job.masks.items())
    ]


class Scheduler:
    """The engine, its lock and its persistence (see module docstring)."""

    def __init__(
        self,
        *,
        max_requeues: int = 3,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.max_requeues = max_requeues
        self.engine = Engine(max_requeues=max_requeues)
        self.clock = clock
        self.stale = True
        self.on_commit: Callable[[], None] | None = None
        self.pass_wanted = asyncio.Event()
        self.passes = 0
        self._lock = asyncio.Lock()
        self._txns: weakref.WeakKeyDictionary[UnitOfWork, Txn] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ serialisation
    async def transaction(self, uow: UnitOfWork) -> Txn:
        """The scheduler's transaction for ``uow`` (taking the lock on first use)."""
        txn = self._txns.get(uow)
        if txn is not None:
            return txn
        if uow.dialect == "sqlite":
            # SQLite has one writer. The bus kit's consumers claim inbox ids (a write)
            # before their handlers run, so every path takes SQLite's write lock first
            # and the scheduler's lock second: one order, no deadlock.
            connection = await uow.session.connection()
            await connection.execute(_TAKE_SQLITE_WRITE_LOCK)
        await self._lock.acquire()
        try:
            sync = uow.session.sync_session
            event.listen(sync, "before_commit", lambda session: self._write_jobs(uow, session))
            event.listen(sync, "after_commit", lambda _s: self._finished(uow, committed=True))
            event.listen(
                sync, "after_soft_rollback", lambda _s, _t: self._finished(uow, committed=False)
            )
            # Begin the database transaction now: a rollback of a session that never
            # began one fires no event, and the lock must always come back.
            await uow.session.connection()
        except BaseException:
            self._lock.release()
            raise
        txn = self._txns[uow] = Txn(uow, self.clock())
        if self.stale:
            await self._reload(txn)
        return txn

    def _write_jobs(self, uow: UnitOfWork, session: Session) -> None:
        """Write every job the transaction touched, in two statements, as it commits."""
        txn = self._txns.get(uow)
        if txn is not None:
            txn.writer.write(session.connection(), txn.now)

    def _finished(self, uow: UnitOfWork, *, committed: bool) -> None:
        txn = self._txns.pop(uow, None)
        if txn is None or txn.done:
            return
        txn.done = True
        if not committed and txn.mutated:
            self.stale = True
            log.warning(
                "scheduler_state_reloads", reason="a transaction that changed it rolled back"
            )
        self._lock.release()
        if committed:
            if self.engine.pass_pending:
                self.pass_wanted.set()
            if uow.emitted and self.on_commit is not None:
                self.on_commit()

    async def _reload(self, txn: Txn) -> None:
        engine = Engine(max_requeues=self.max_requeues)
        lost = await load(await txn.uow.session.connection(), engine)
        self.engine = engine
        self.stale = False
        log.info(
            "scheduler_state_loaded",
            nodes=len(engine.index.nodes),
            jobs=len(engine.jobs),
            queued=engine.queued,
            lost=len(lost),
        )
        if lost:
            txn.mutated = True
            for job in lost:
                self.record(txn, engine.requeue_lost(job, txn.now))

    # ------------------------------------------------------------------ outcomes
    def record(self, txn: Txn, outcomes: Iterable[Outcome]) -> None:
        """Mark the jobs the outcomes touched for writing (at commit) and emit their events."""
        for outcome in outcomes:
            job = outcome.job
            txn.writer.touched([job])
            match outcome:
                case Placed():
                    assert job.placement is not None
                    txn.emit(
                        JobPlaced(
                            job_id=job.job_id,
                            tenant=job.tenant,
                            attempt=job.attempt,
                            model=job.placement.model,
                            site_id=job.placement.site_id,
                            priority=_priority(job.priority),
                            allocations=allocations(job),
                            racks_spanned=job.placement.racks_spanned,
                            domains_spanned=job.placement.domains_spanned,
                            placed_at=txn.now,
                        ),
                        job,
                    )
                case Queued():
                    txn.emit(
                        JobQueued(
                            job_id=job.job_id,
                            tenant=job.tenant,
                            reason=_queue_reason(job.reason),
                            message=job.message[:1024],
                            queued_at=txn.now,
                        ),
                        job,
                    )
                case Requeued(attempt=attempt, reason=reason, message=message):
                    txn.emit(
                        JobRequeued(
                            job_id=job.job_id,
                            tenant=job.tenant,
                            attempt=max(attempt, 1),
                            reason=_requeue_reason(reason),
                            message=message[:1024],
                            requeues=job.requeues,
                            requeued_at=txn.now,
                        ),
                        job,
                    )
                case Preempted(attempt=attempt, by_job_id=by, node_ids=nodes):
                    txn.emit(
                        JobPreempted(
                            job_id=job.job_id,
                            tenant=job.tenant,
                            attempt=max(attempt, 1),
                            by_job_id=by,
                            node_ids=list(nodes),
                            preempted_at=txn.now,
                        ),
                        job,
                    )
                case Abandoned(attempt=attempt, reason=reason):
                    txn.emit(
                        JobAbandoned(
                            job_id=job.job_id,
                            tenant=job.tenant,
                            attempt=max(attempt, 1),
                            reason=reason[:1024],
                            requeues=job.requeues,
                            abandoned_at=txn.now,
                        ),
                        job,
                    )
                case _:
                    pass  # reason changes, cancellations, reports: rows only (or emitted by caller)

    # ------------------------------------------------------------------ passes
    async def run_pass(self, store: Store) -> int:
        """One scheduling pass in its own transaction; returns how many jobs it placed."""
        async with store.unit_of_work() as uow:
            txn = await self.transaction(uow)
            if not self.engine.pass_pending:
                return 0
            txn.mutated = True
            outcomes = self.engine.schedule_pass(txn.now)
            self.passes += 1
            self.record(txn, outcomes)
            return sum(isinstance(o, Placed) for o in outcomes)

    async def run_passes(self, store: Store, *, retry_s: float = 1.0) -> None:
        """Run a pass whenever one is wanted, until cancelled (a background task)."""
        self.pass_wanted.set()  # the first one loads the state and looks at the queue
        while True:
            await self.pass_wanted.wait()
            self.pass_wanted.clear()
            try:
                placed = await self.run_pass(store)
            except Exception:
                log.exception("scheduling_pass_failed")
                await asyncio.sleep(retry_s)
                self.pass_wanted.set()
                continue
            if placed:
                log.info("scheduling_pass", placed=placed, queued=self.engine.queued)


def _priority(value: str) -> PriorityClass:
    return cast("PriorityClass", value)


def _queue_reason(value: str) -> QueueReason:
    return cast("QueueReason", value)


def _requeue_reason(value: str) -> RequeueReason:
    return cast("RequeueReason", value)
