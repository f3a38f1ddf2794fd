"""The scheduler's repository: load the engine from the database, write back what changed.

``load`` rebuilds an ``Engine`` from the tables (capacity view, quotas, key holds,
active jobs with their exact accelerator masks). ``JobWriter`` writes the jobs an
operation touched: new ones with one executemany ``INSERT``, changed ones with one
executemany ``UPDATE``; inventory rows are upserted (``ON CONFLICT``) on SQLite and
PostgreSQL alike. Everything goes through the unit of work's connection, so it commits
(or not) with the events the same operation emits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from aifactory.contracts.jobs.v1 import JobSpec
from aifactory.scheduling.domain import Job
from aifactory.scheduling.engine import Engine
from aifactory.scheduling.placement import Placement
from aifactory.scheduling.tables import JobRow, KeyHoldRow, NodeRow, QuotaRow, RackRow, SiteRow

SITES: Table = SiteRow.__table__  # type: ignore[attr-defined]
RACKS: Table = RackRow.__table__  # type: ignore[attr-defined]
NODES: Table = NodeRow.__table__  # type: ignore[attr-defined]
JOBS: Table = JobRow.__table__  # type: ignore[attr-defined]
QUOTAS: Table = QuotaRow.__table__  # type: ignore[attr-defined]
HOLDS: Table = KeyHoldRow.__table__  # type: ignore[attr-defined]
ACTIVE_STATES = ("queued", "placed", "running")

_spec_decoder = msgspec.json.Decoder(JobSpec)
_json = msgspec.json.Encoder()


class _PlacementRecord(msgspec.Struct, frozen=True):
    model: str
    site_id: str
    width: int
    masks: dict[str, int]
    racks: dict[str, str] = {}
    held: list[str] = []
    racks_spanned: int = 1
    domains_spanned: int = 1


_placement_decoder = msgspec.json.Decoder(_PlacementRecord)
_sites_decoder = msgspec.json.Decoder(list[str])


async def upsert(
    conn: AsyncConnection, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> None:
    """Insert ``rows`` or update the existing ones (same primary key)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    columns = [c for c in rows[0] if c not in keys]
    statement = statement.on_conflict_do_update(
        index_elements=list(keys), set_={c: statement.excluded[c] for c in columns}
    )
    await conn.execute(statement, list(rows))


def spec_of(row_spec: bytes) -> JobSpec:
    """Decode a stored job spec."""
    return _spec_decoder.decode(row_spec)


def stored_allocations(placement: str | None) -> tuple[str, str, list[tuple[str, str, int]]]:
    """Model, site and (node, rack, mask) of a stored placement ("" and [] when none)."""
    if placement is None:
        return "", "", []
    record = _placement_decoder.decode(placement)
    return (
        record.model,
        record.site_id,
        [(n, record.racks.get(n, ""), m) for n, m in sorted(record.masks.items())],
    )


def placement_json(job: Job) -> str | None:
    """The stored form of a job's current placement."""
    if job.placement is None:
        return None
    p = job.placement
    record = _PlacementRecord(
        p.model,
        p.site_id,
        p.width,
        dict(job.masks),
        dict(zip(p.node_ids, p.rack_ids, strict=False)),
        list(p.held),
        p.racks_spanned,
        p.domains_spanned,
    )
    return _json.encode(record).decode()


def _job_state(job: Job, now: dt.datetime) -> dict[str, Any]:
    return {
        "state": job.state,
        "reason": job.reason,
        "message": job.message[:1024],
        "attempt": job.attempt,
        "requeues": job.requeues,
        "placement": placement_json(job),
        "key_sites": None
        if job.key_sites is None
        else _json.encode(sorted(job.key_sites)).decode(),
        "key_pending": job.key_pending,
        "updated_at": now,
        "placed_at": job.placed_at,
        "waiting_since": job.waiting_since,
    }


_STATE_COLUMNS = (
    "state",
    "reason",
    "message",
    "attempt",
    "requeues",
    "placement",
    "key_sites",
    "key_pending",
    "updated_at",
    "placed_at",
    "waiting_since",
)
_UPDATE_JOB = (
    update(JOBS)
    .where(JOBS.c.job_id == bindparam("b_job_id"))
    .values({name: bindparam(f"b_{name}") for name in _STATE_COLUMNS})
)


class JobWriter:
    """Collects the jobs an operation touched and writes them in two statements."""

    def __init__(self) -> None:
        self.new: dict[str, tuple[Job, bytes]] = {}
        self.changed: dict[str, Job] = {}

    def created(self, job: Job, spec: bytes) -> None:
        """A job submitted in this operation (inserted)."""
        self.new[job.job_id] = (job, spec)

    def touched(self, jobs: Iterable[Job]) -> None:
        """Jobs whose state, reason or allocation changed (updated)."""
        for job in jobs:
            if job.job_id not in self.new:
                self.changed[job.job_id] = job

    def write(self, conn: Connection, now: dt.datetime) -> None:
        """Insert the new jobs and update the changed ones; then forget both.

        Synchronous: it runs inside the commit (SQLAlchemy's ``before_commit``), where
        the async engine's connection is driven through its greenlet."""
        if self.new:
            rows = [
                {
                    "job_id": job.job_id,
                    "tenant": job.tenant,
                    "client_job_id": job.client_job_id,
                    "seq": job.seq,
                    "priority": job.priority,
                    "spec": spec,
                    "submitted_at": job.submitted_at,
                    **_job_state(job, now),
                }
                for job, spec in self.new.values()
            ]
            conn.execute(insert(JOBS), rows)
        if self.changed:
            params = [
                {"b_job_id": job.job_id, **{f"b_{k}": v for k, v in _job_state(job, now).items()}}
                for job in self.changed.values()
            ]
            conn.execute(_UPDATE_JOB, params)
        self.new.clear()
        self.changed.clear()


def job_from_row(row: Mapping[Any, Any], spec: JobSpec) -> Job:
    """The engine's job for a stored row."""
    job = Job(
        job_id=row["job_id"],
        tenant=row["tenant"],
        client_job_id=row["client_job_id"],
        name=spec.name,
        priority=spec.priority,
        models=tuple(spec.models),
        total=spec.accelerators,
        width=spec.accelerators_per_node,
        runtime_s=spec.expected_runtime_s,
        allowed_sites=frozenset(spec.allowed_sites),
        jurisdictions=tuple(spec.allowed_jurisdictions),
        key_id=spec.dataset_key_id,
        isolation=spec.isolation,
        seq=row["seq"],
        submitted_at=row["submitted_at"],
        state=row["state"],
        reason=row["reason"],
        message=row["message"],
        attempt=row["attempt"],
        requeues=row["requeues"],
        placed_at=row["placed_at"],
        key_pending=row["key_pending"],
        waiting_since=row["waiting_since"],
    )
    if row["key_sites"] is not None:
        job.key_sites = frozenset(_sites_decoder.decode(row["key_sites"]))
    if row["placement"] is not None:
        record = _placement_decoder.decode(row["placement"])
        job.masks = dict(record.masks)
        nodes = tuple(sorted(record.masks))
        job.placement = Placement(
            model=record.model,
            site_id=record.site_id,
            node_ids=nodes,
            rack_ids=tuple(record.racks.get(n, "") for n in nodes),
            width=record.width,
            held=tuple(record.held),
            racks_spanned=record.racks_spanned,
            domains_spanned=record.domains_spanned,
        )
    return job


async def load(conn: AsyncConnection, engine: Engine) -> list[Job]:
    """Fill ``engine`` from the database; returns active jobs whose allocation no longer fits."""
    index = engine.index
    for row in (await conn.execute(select(SITES))).mappings():
        index.upsert_site(row["site_id"], row["jurisdiction"])
    for row in (await conn.execute(select(RACKS))).mappings():
        index.upsert_rack(row["rack_id"], row["site_id"], row["domain_size"])
    for row in (await conn.execute(select(NODES).order_by(NODES.c.node_id))).mappings():
        index.upsert_node(
            row["node_id"],
            site_id=row["site_id"],
            rack_id=row["rack_id"],
            model=row["model"],
            capacity=row["capacity"],
            state=row["state"],
            dedicated=row["dedicated"],
        )
        if not row["healthy"]:
            index.set_health(row["node_id"], healthy=False)
    for row in (await conn.execute(select(QUOTAS))).mappings():
        engine.quotas.setdefault(row["tenant"], {})[row["model"]] = row["accelerators"]
    for row in (await conn.execute(select(HOLDS))).mappings():
        engine.holds.add((row["tenant"], row["key_id"]))
    lost: list[Job] = []
    query = select(JOBS).where(JOBS.c.state.in_(ACTIVE_STATES)).order_by(JOBS.c.seq)
    for row in (await conn.execute(query)).mappings():
        spec = spec_of(row["spec"])
        job = job_from_row(row, spec)
        if not engine.restore(job):
            lost.append(job)
    engine.request_pass()
    return lost
