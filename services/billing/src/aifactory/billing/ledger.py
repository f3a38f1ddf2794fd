"""Applying a batch of consumed events to the facts and the append-only ledger.

``apply_batch`` runs inside the consumer's unit of work (one transaction per fetched
batch): it stores the batch's facts, finds every job and node whose records the NEW
facts may change (a late node failure or dedication reaches the attempts that overlap
it), re-derives their records with ``metering`` and appends to the ledger what differs
from the current records: a ``reversal`` of each changed or vanished record and a
``record`` of each changed or new one, each announced as a ``UsageRecorded`` event
through the outbox. Ledger entry ids are ``<source event id>/<n>``, unique per event,
so a replay can never append twice.

Exactly once without the kit's inbox: the fact tables are keyed by the consumed
event's id, and the facts are inserted first with ``ON CONFLICT DO NOTHING
RETURNING``; an event whose facts were already stored (a redelivery, a replay, a
duplicate with a new ``Nats-Msg-Id``) returns nothing and touches nothing. An event
that tells billing nothing (a healthy verdict) stores nothing and is simply acked.

Per batch, whatever its size: one insert per fact table, one read each of the
touched jobs' current records, facts and nodes, one insert each into the ledger and
the current records (plus a delete when records are reversed). Jobs that got only
start reports and have no records yet are not re-derived (a start moves an attempt's
beginning, it never creates a record).

On PostgreSQL the batch first takes a transaction-scoped advisory lock: the three
consumers (jobs, inventory, health) and any replica derive from shared facts, and
must not derive concurrently from each other's uncommitted facts. On SQLite the fact
insert is the transaction's first statement, so it takes the single write lock before
anything is read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from aifactory.billing.facts import ExtractedFacts, extract, from_ms
from aifactory.billing.metering import (
    DedicationFact,
    JobFact,
    NodeFacts,
    NodeInfo,
    UsageRecord,
    diff_records,
    job_records,
    node_records,
)
from aifactory.billing.tables import (
    AllocationRow,
    CurrentRecordRow,
    JobFactRow,
    LedgerRow,
    NodeFactRow,
)
from aifactory.contracts.base import Contract
from aifactory.contracts.billing.v1 import UsageRecorded
from aifactory.contracts.envelope import Envelope
from aifactory.store.uow import NewEvent, UnitOfWork

ADVISORY_LOCK_KEY = 0x61666269  # "afbi": serialises billing derivations on PostgreSQL
_CHUNK = 500

_LEDGER = LedgerRow.__table__  # type: ignore[attr-defined]
_CURRENT = CurrentRecordRow.__table__  # type: ignore[attr-defined]
_JOB_FACTS = JobFactRow.__table__  # type: ignore[attr-defined]
_NODE_FACTS = NodeFactRow.__table__  # type: ignore[attr-defined]
_ALLOCATIONS = AllocationRow.__table__  # type: ignore[attr-defined]


def _chunks(values: Collection[str]) -> Iterable[list[str]]:
    items = sorted(values)
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _parse_allocations(raw: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for item in raw.split(","):
        if item:
            node, _, count = item.rpartition(":")
            pairs.append((node, int(count)))
    return tuple(pairs)


_RECORD_COLUMNS = tuple(
    _LEDGER.c[name]
    for name in (
        "record_key", "usage", "tenant", "model", "site_id", "units", "start_ms", "end_ms",
        "priority", "job_id", "attempt", "node_id", "node_failure", "unpriced_reason",
    )
)  # fmt: skip
"""Ledger columns in ``UsageRecord``'s field order (rows become records positionally)."""


class LedgerWriter:
    """Appends ledger entries for one batch and tracks the events they announce."""

    def __init__(self, recorded_ms: int) -> None:
        self.recorded_ms = recorded_ms
        self.entries: list[dict[str, object]] = []
        self.current_deleted: list[str] = []
        self.current_inserted: list[dict[str, object]] = []
        self.events: list[NewEvent] = []
        self._counters: dict[str, int] = {}

    def _entry_id(self, source_event_id: str) -> str:
        n = self._counters.get(source_event_id, 0)
        self._counters[source_event_id] = n + 1
        return f"{source_event_id}/{n}"

    def _append(self, record: UsageRecord, *, entry: str, source: str, reverses: str | None) -> str:
        entry_id = self._entry_id(source)
        sign = 1 if entry == "record" else -1
        self.entries.append(
            {
                "entry_id": entry_id,
                "entry": entry,
                "sign": sign,
                "reverses": reverses,
                "record_key": record.record_key,
                "source_event_id": source,
                "usage": record.usage,
                "tenant": record.tenant,
                "job_id": record.job_id,
                "attempt": record.attempt,
                "node_id": record.node_id,
                "model": record.model,
                "priority": record.priority,
                "site_id": record.site_id,
                "units": record.units,
                "start_ms": record.start_ms,
                "end_ms": record.end_ms,
                "node_failure": record.node_failure,
                "unpriced_reason": record.unpriced_reason,
                "recorded_ms": self.recorded_ms,
            }
        )
        self.events.append(
            NewEvent(
                UsageRecorded(
                    entry_id=entry_id,
                    entry=entry,  # type: ignore[arg-type]
                    reverses=reverses,
                    record_key=record.record_key,
                    source_event_id=source,
                    usage=record.usage,  # type: ignore[arg-type]
                    tenant=record.tenant,
                    job_id=record.job_id,
                    attempt=record.attempt,
                    node_id=record.node_id,
                    model=record.model,
                    priority=record.priority,  # type: ignore[arg-type]
                    site_id=record.site_id,
                    units=record.units,
                    start=from_ms(record.start_ms),
                    end=from_ms(record.end_ms) if record.end_ms is not None else None,
                    node_failure=record.node_failure,
                    unpriced_reason=record.unpriced_reason,
                ),
                tenant=record.tenant,
            )
        )
        return entry_id

    def reconcile(
        self,
        current: dict[str, tuple[str, UsageRecord]],
        wanted: Sequence[UsageRecord],
        source: str,
    ) -> None:
        """Append what makes ``current`` (key -> (entry id, record)) equal ``wanted``."""
        change = diff_records({k: r for k, (_, r) in current.items()}, wanted)
        for key in change.reversals:
            entry_id, record = current[key]
            self._append(record, entry="reversal", source=source, reverses=entry_id)
            self.current_deleted.append(key)
        for record in change.records:
            entry_id = self._append(record, entry="record", source=source, reverses=None)
            self.current_inserted.append(
                {
                    "record_key": record.record_key,
                    "entry_id": entry_id,
                    "job_id": record.job_id,
                    "node_id": record.node_id,
                }
            )


class BatchApplier:
    """Stores one batch's facts and re-derives what they touch (see module docstring)."""

    def __init__(self, uow: UnitOfWork, conn: AsyncConnection, recorded_ms: int) -> None:
        self.uow = uow
        self.conn = conn
        self.writer = LedgerWriter(recorded_ms)
        self.postgres = uow.dialect == "postgresql"

    def _insert_ignore(self, table: Any) -> Any:
        dialect_insert = pg_insert if self.postgres else sqlite_insert
        return dialect_insert(table).on_conflict_do_nothing()

    def _insert_new(self, table: Any) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING RETURNING <primary key>`` (the new rows' keys)."""
        (key,) = table.primary_key.columns
        return self._insert_ignore(table).returning(key)

    async def _lock(self) -> None:
        if self.postgres:
            await self.conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )

    async def run(self, envelopes: Sequence[Envelope[Contract]]) -> list[NewEvent]:
        """Apply the batch; return the ``UsageRecorded`` events to publish."""
        extracted = ExtractedFacts()
        for envelope in envelopes:
            extract(envelope, extracted)
        if not extracted.job_facts and not extracted.node_facts:
            return []  # nothing billing meters (e.g. healthy verdicts): no statement at all
        await self._lock()
        fresh = await self._store(extracted)
        source_of_job: dict[str, str] = {}
        fresh_kinds: dict[str, set[str]] = {}
        for fact in fresh.job_facts:
            job_id = str(fact["job_id"])
            source_of_job[job_id] = str(fact["event_id"])
            fresh_kinds.setdefault(job_id, set()).add(str(fact["kind"]))
        source_of_node = {str(f["node_id"]): str(f["event_id"]) for f in fresh.node_facts}
        touched_by_nodes = await self._jobs_touched_by_nodes(fresh.node_facts)
        touched_jobs = {**source_of_job, **touched_by_nodes}
        if touched_jobs:
            starts_only = {
                job_id
                for job_id, kinds in fresh_kinds.items()
                if kinds == {"started"} and job_id not in touched_by_nodes
            }
            await self._rederive_jobs(touched_jobs, starts_only=starts_only)
        dedication_nodes = {
            str(f["node_id"]): source_of_node[str(f["node_id"])]
            for f in fresh.node_facts
            if f["kind"] in ("dedication", "info")
        }
        if dedication_nodes:
            await self._rederive_nodes(dedication_nodes)
        await self._write()
        return self.writer.events

    async def void(self, event_id: str, source: str) -> tuple[int, int] | None:
        """Void the facts of ``event_id`` and re-derive what they touched.

        Returns (facts voided now, ledger entries appended), or None when billing
        never consumed that event.
        """
        await self._lock()
        jobs, nodes = _JOB_FACTS.c, _NODE_FACTS.c
        job_rows = (
            await self.conn.execute(select(_JOB_FACTS).where(jobs.event_id == event_id))
        ).all()
        node_rows = (
            await self.conn.execute(select(_NODE_FACTS).where(nodes.event_id == event_id))
        ).all()
        if not job_rows and not node_rows:
            return None
        fresh_jobs = [r for r in job_rows if not r.voided]
        fresh_nodes = [r for r in node_rows if not r.voided]
        if not fresh_jobs and not fresh_nodes:
            return (0, 0)
        await self.conn.execute(
            update(_JOB_FACTS).where(jobs.event_id == event_id).values(voided=True)
        )
        await self.conn.execute(
            update(_NODE_FACTS).where(nodes.event_id == event_id).values(voided=True)
        )
        node_facts = [dict(r._mapping) for r in fresh_nodes]
        touched_jobs = {r.job_id: source for r in fresh_jobs}
        touched_jobs.update(dict.fromkeys(await self._jobs_touched_by_nodes(node_facts), source))
        if touched_jobs:
            await self._rederive_jobs(touched_jobs)
        touched_nodes = {
            str(f["node_id"]): source for f in node_facts if f["kind"] in ("dedication", "info")
        }
        if touched_nodes:
            await self._rederive_nodes(touched_nodes)
        await self._write()
        return (len(fresh_jobs) + len(fresh_nodes), len(self.writer.entries))

    # ------------------------------------------------------------------ facts
    async def _store(self, extracted: ExtractedFacts) -> ExtractedFacts:
        """Insert the facts; return those new to the database (the batch's inbox).

        The facts' keys are the consumed events' ids, so ``INSERT ... ON CONFLICT DO
        NOTHING RETURNING`` both stores the facts and tells which events were never
        applied: a redelivered or replayed event returns nothing and touches nothing.
        Being the transaction's first write, it also takes SQLite's write lock.
        """
        fresh = ExtractedFacts()
        if extracted.job_facts:
            new_events = set(
                (await self.conn.execute(self._insert_new(_JOB_FACTS), extracted.job_facts))
                .scalars()
                .all()
            )
            fresh.job_facts = [f for f in extracted.job_facts if f["event_id"] in new_events]
        if extracted.node_facts:
            new_facts = set(
                (await self.conn.execute(self._insert_new(_NODE_FACTS), extracted.node_facts))
                .scalars()
                .all()
            )
            fresh.node_facts = [f for f in extracted.node_facts if f["fact_id"] in new_facts]
        placed = {(f["job_id"], f["attempt"]) for f in fresh.job_facts if f["kind"] == "placed"}
        fresh.allocations = [
            a for a in extracted.allocations if (a["job_id"], a["attempt"]) in placed
        ]
        if fresh.allocations:
            await self.conn.execute(self._insert_ignore(_ALLOCATIONS), fresh.allocations)
        return fresh

    async def _jobs_touched_by_nodes(
        self, node_facts: Sequence[dict[str, object]]
    ) -> dict[str, str]:
        """Jobs with an attempt on a node whose failure or dedication change may affect it.

        An attempt is affected unless its records end at or before the fact's instant
        (a failure also needs the attempt placed by then); the metered end is read from
        the attempt's current records, so the hot path never updates allocations.
        """
        touched: dict[str, str] = {}
        alloc, current, ledger = _ALLOCATIONS.c, _CURRENT.c, _LEDGER.c
        metered_end = (
            select(func.max(ledger.end_ms))
            .select_from(_CURRENT.join(_LEDGER, ledger.entry_id == current.entry_id))
            .where(current.job_id == alloc.job_id, ledger.attempt == alloc.attempt)
            .scalar_subquery()
        )
        for fact in node_facts:
            if fact["kind"] not in ("failure", "dedication"):
                continue
            at_ms = int(str(fact["at_ms"]))
            if fact["kind"] == "failure":
                # ">=": an attempt this failure already cut ends exactly at it, and
                # voiding the failure must reach that attempt to restore its end.
                query = select(alloc.job_id).where(
                    alloc.node_id == fact["node_id"],
                    alloc.placed_ms <= at_ms,
                    metered_end.is_(None) | (metered_end >= at_ms),
                )
            else:
                query = select(alloc.job_id).where(
                    alloc.node_id == fact["node_id"],
                    metered_end.is_(None) | (metered_end > at_ms),
                )
            for (job_id,) in await self.conn.execute(query):
                touched.setdefault(job_id, str(fact["event_id"]))
        return touched

    async def _load_node_facts(
        self, node_ids: Collection[str], *, kinds: Collection[str] | None = None
    ) -> dict[str, NodeFacts]:
        """The (not voided) facts of ``node_ids``, only of ``kinds`` when given."""
        failures: dict[str, list[int]] = {}
        dedications: dict[str, list[DedicationFact]] = {}
        infos: dict[str, tuple[int, str, NodeInfo]] = {}
        nodes = _NODE_FACTS.c
        columns = (
            nodes.node_id, nodes.kind, nodes.at_ms, nodes.event_id, nodes.tenant, nodes.model,
            nodes.site_id,
        )  # fmt: skip
        for chunk in _chunks(node_ids):
            query = select(*columns).where(nodes.node_id.in_(chunk), nodes.voided.is_(False))
            if kinds is not None:
                query = query.where(nodes.kind.in_(sorted(kinds)))
            for node_id, kind, at_ms, event_id, tenant, model, site_id in await self.conn.execute(
                query
            ):
                if kind == "failure":
                    failures.setdefault(node_id, []).append(at_ms)
                elif kind == "dedication":
                    dedications.setdefault(node_id, []).append(
                        DedicationFact(event_id, node_id, at_ms, tenant)
                    )
                else:
                    known = infos.get(node_id)
                    if known is None or (at_ms, event_id) > known[:2]:
                        infos[node_id] = (at_ms, event_id, NodeInfo(model, site_id))
        return {
            node_id: NodeFacts(
                failures_ms=tuple(sorted(failures.get(node_id, ()))),
                dedications=tuple(dedications.get(node_id, ())),
                info=infos[node_id][2] if node_id in infos else NodeInfo(),
            )
            for node_id in node_ids
        }

    async def _current(
        self, column: Any, keys: Collection[str]
    ) -> dict[str, dict[str, tuple[str, UsageRecord]]]:
        """Current records (key -> (entry id, record)) grouped by job or node id."""
        grouped: dict[str, dict[str, tuple[str, UsageRecord]]] = {}
        for chunk in _chunks(keys):
            rows = await self.conn.execute(
                select(column, _LEDGER.c.entry_id, *_RECORD_COLUMNS)
                .join(_CURRENT, _CURRENT.c.entry_id == _LEDGER.c.entry_id)
                .where(column.in_(chunk))
            )
            for owner, entry_id, *fields in rows:
                record = UsageRecord(*fields)  # Boolean columns come back as bool
                grouped.setdefault(owner, {})[record.record_key] = (entry_id, record)
        return grouped

    # ------------------------------------------------------------------ jobs
    async def _rederive_jobs(
        self, touched: dict[str, str], *, starts_only: Collection[str] = ()
    ) -> None:
        """Re-derive the records of ``touched`` jobs (job id -> source event id).

        A job in ``starts_only`` got nothing but new start reports: a start moves the
        beginning of an attempt that already has records and creates none, so a job
        without current records is left alone (its facts are not even loaded).
        """
        current = await self._current(_CURRENT.c.job_id, touched)
        derive = {j: s for j, s in touched.items() if j in current or j not in starts_only}
        if not derive:
            return
        facts = await self._load_job_facts(derive)
        node_ids = {
            node
            for job_facts in facts.values()
            for fact in job_facts
            if fact.kind == "placed"
            for node, _ in fact.allocations
        }
        nodes = (
            await self._load_node_facts(node_ids, kinds=("failure", "dedication"))
            if node_ids
            else {}
        )
        for job_id, source in derive.items():
            wanted = job_records(facts.get(job_id, ()), nodes)
            self.writer.reconcile(current.get(job_id, {}), wanted, source)

    async def _load_job_facts(self, job_ids: Collection[str]) -> dict[str, list[JobFact]]:
        """The (not voided) facts of ``job_ids``, grouped by job."""
        facts: dict[str, list[JobFact]] = {}
        jobs = _JOB_FACTS.c
        columns = (
            jobs.event_id, jobs.job_id, jobs.kind, jobs.at_ms, jobs.reported_ms, jobs.attempt,
            jobs.tenant, jobs.model, jobs.site_id, jobs.priority, jobs.allocations,
            jobs.node_failure,
        )  # fmt: skip
        for chunk in _chunks(job_ids):
            rows = await self.conn.execute(
                select(*columns).where(jobs.job_id.in_(chunk), jobs.voided.is_(False))
            )
            # Rows into JobFact's fields positionally (the column order above): the hot
            # loop of a batch, several rows per derived job.
            for row in rows:
                fact = JobFact(*row[:10], _parse_allocations(row[10]), bool(row[11]))
                facts.setdefault(fact.job_id, []).append(fact)
        return facts

    # ------------------------------------------------------------------ nodes
    async def _rederive_nodes(self, touched: dict[str, str]) -> None:
        nodes = await self._load_node_facts(touched)
        current = await self._current(_CURRENT.c.node_id, touched)
        for node_id, source in touched.items():
            self.writer.reconcile(
                current.get(node_id, {}), node_records(node_id, nodes[node_id]), source
            )

    # ------------------------------------------------------------------ write
    async def _write(self) -> None:
        writer = self.writer
        for chunk in _chunks(writer.current_deleted):
            await self.conn.execute(delete(_CURRENT).where(_CURRENT.c.record_key.in_(chunk)))
        if writer.entries:
            await self.conn.execute(insert(_LEDGER), writer.entries)
        if writer.current_inserted:
            await self.conn.execute(insert(_CURRENT), writer.current_inserted)


async def void_event(
    event_id: str, uow: UnitOfWork, *, source: str, recorded_ms: int
) -> tuple[tuple[int, int] | None, list[NewEvent]]:
    """Void a consumed event's facts in ``uow``'s transaction (see ``BatchApplier.void``)."""
    conn = await uow.session.connection()
    applier = BatchApplier(uow, conn, recorded_ms)
    result = await applier.void(event_id, source)
    return result, applier.writer.events


async def apply_batch(
    envelopes: Sequence[Envelope[Contract]], uow: UnitOfWork, recorded_ms: int
) -> list[NewEvent]:
    """Apply consumed events in ``uow``'s transaction (see module docstring)."""
    conn = await uow.session.connection()
    return await BatchApplier(uow, conn, recorded_ms).run(envelopes)
