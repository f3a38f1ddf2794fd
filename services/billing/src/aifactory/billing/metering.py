"""Metering rules: from stored facts to the usage records a job or a node should have.

Pure and synchronous. Input is the set of FACTS known about a job (its placements,
start reports and endings, each with the id of the event that told it) and about
the nodes it ran on (failure instants, dedication changes, model and site); output is
the complete set of usage records those facts imply, keyed. The result depends only
on the set of facts, never on the order they arrived in or on duplicates, which is
what makes replays, shuffles and late events harmless (docs/billing.md):

- an attempt is metered from its ``started_at`` if the workload reported one, else
  from its ``placed_at``, to the earliest of its endings (finished, failed,
  preempted, requeued, cancelled, abandoned);
- a failure instant of one of its nodes inside that window ends it there (and marks
  it ``node_failure``, which the credit policy looks at); a node failure ends an
  attempt even when no ending was reported yet;
- a report without an attempt number belongs to the latest placement at or before
  its instant;
- two reports of the same kind for the same attempt: the one published last
  (CloudEvents ``time``, then event id) is the correction that counts;
- time on nodes dedicated to the job's tenant is ``covered`` (billed per node-hour
  through the dedication, not again per accelerator-hour);
- an attempt still running yields nothing yet; an ending before the start yields
  one unpriced record (``negative_duration``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

END_KINDS = frozenset({"finished", "failed", "preempted", "requeued", "cancelled", "abandoned"})
JOB_FACT_KINDS = frozenset({"placed", "started"}) | END_KINDS


@dataclass(frozen=True, slots=True)
class JobFact:
    """One thing an event told about a job (``kind`` in ``JOB_FACT_KINDS``)."""

    event_id: str
    job_id: str
    kind: str
    at_ms: int
    """The instant the fact is about (placed_at, started_at, finished_at, ...)."""
    reported_ms: int
    """When it was published (CloudEvents time): a later report corrects an earlier one."""
    attempt: int | None = None
    tenant: str = ""
    model: str = ""
    site_id: str = ""
    priority: str = ""
    allocations: tuple[tuple[str, int], ...] = ()
    """``(node id, accelerators)`` per node (placements only)."""
    node_failure: bool = False
    """An ending caused by a node failure (``job_requeued`` with reason ``node_failed``)."""


@dataclass(frozen=True, slots=True)
class DedicationFact:
    """From ``at_ms`` on, a node is dedicated to ``tenant`` (None: shared again)."""

    event_id: str
    node_id: str
    at_ms: int
    tenant: str | None


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What billing knows of a node (for node-hour pricing)."""

    model: str = ""
    site_id: str = ""


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """Everything known about one node that metering needs."""

    failures_ms: tuple[int, ...] = ()
    dedications: tuple[DedicationFact, ...] = ()
    info: NodeInfo = field(default_factory=NodeInfo)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """A usage record as metering derives it (the ledger stores it, signed)."""

    record_key: str
    usage: str
    """``usage`` | ``covered`` | ``dedicated``."""
    tenant: str
    model: str
    site_id: str
    units: int
    start_ms: int
    end_ms: int | None
    priority: str | None = None
    job_id: str | None = None
    attempt: int | None = None
    node_id: str | None = None
    node_failure: bool = False
    unpriced_reason: str = ""


_NO_NODE_FACTS = NodeFacts()

# ---------------------------------------------------------------------- jobs


def _latest(facts: Iterable[JobFact]) -> JobFact | None:
    """The correction that counts: published last (then the larger event id)."""
    return max(facts, key=lambda f: (f.reported_ms, f.event_id), default=None)


def _attempt_of(fact: JobFact, placements: Mapping[int, JobFact]) -> int | None:
    """The attempt a report refers to (its own, or the latest placed at or before it)."""
    if fact.attempt is not None:
        return fact.attempt
    if not placements:
        return None
    before = [a for a, p in placements.items() if p.at_ms <= fact.at_ms]
    return max(before) if before else min(placements)


def dedication_windows(
    facts: Iterable[DedicationFact],
) -> list[tuple[str, int, int | None]]:
    """A node's dedication windows ``(tenant, start ms, end ms or None)`` from its changes."""
    windows: list[tuple[str, int, int | None]] = []
    current: tuple[str, int] | None = None
    for fact in sorted(facts, key=lambda f: (f.at_ms, f.event_id)):
        if current is not None and fact.tenant == current[0]:
            continue
        if current is not None:
            windows.append((current[0], current[1], fact.at_ms))
            current = None
        if fact.tenant is not None:
            current = (fact.tenant, fact.at_ms)
    if current is not None:
        windows.append((current[0], current[1], None))
    return windows


def _dedicated_to(windows: Sequence[tuple[str, int, int | None]], tenant: str, at_ms: int) -> bool:
    if not windows:
        return False
    return any(
        w_tenant == tenant and start <= at_ms and (end is None or at_ms < end)
        for w_tenant, start, end in windows
    )


def _attempt_records(
    placed: JobFact,
    facts: Sequence[JobFact],
    nodes: Mapping[str, NodeFacts],
) -> list[UsageRecord]:
    """The records of one attempt (nothing while it is still running)."""
    by_kind: dict[str, list[JobFact]] = {}
    for fact in facts:
        by_kind.setdefault(fact.kind, []).append(fact)
    started = _latest(by_kind.get("started", ()))
    start = started.at_ms if started is not None else placed.at_ms
    endings = [
        latest
        for kind, reports in by_kind.items()
        if kind in END_KINDS and (latest := _latest(reports)) is not None
    ]  # the correction that counts of each kind of ending; the earliest of them ends it
    ending = min(endings, key=lambda e: (e.at_ms, e.event_id), default=None)
    end = ending.at_ms if ending is not None else None
    node_failure = ending.node_failure if ending is not None else False
    failures = [
        f
        for node_id, _ in placed.allocations
        for f in nodes.get(node_id, _NO_NODE_FACTS).failures_ms
        if f >= placed.at_ms and (end is None or f < end)
    ]
    if failures:
        end = max(min(failures), start)
        node_failure = True
    if end is None:
        return []
    base = f"job/{placed.job_id}/{placed.attempt}"
    common = {
        "tenant": placed.tenant,
        "model": placed.model,
        "site_id": placed.site_id,
        "priority": placed.priority,
        "job_id": placed.job_id,
        "attempt": placed.attempt,
        "node_failure": node_failure,
    }
    total_units = sum(count for _, count in placed.allocations)
    if end < start:
        return [
            UsageRecord(
                record_key=f"{base}/0",
                usage="usage",
                units=total_units,
                start_ms=start,
                end_ms=end,
                unpriced_reason="negative_duration",
                **common,  # type: ignore[arg-type]
            )
        ]
    return _split_by_dedication(
        base, placed=placed, start=start, end=end, nodes=nodes, common=common
    )


def _split_by_dedication(
    base: str,
    *,
    placed: JobFact,
    start: int,
    end: int,
    nodes: Mapping[str, NodeFacts],
    common: Mapping[str, object],
) -> list[UsageRecord]:
    """Records of ``[start, end)``: shared and covered accelerators, split where that changes."""
    windows = {
        node_id: dedication_windows(nodes.get(node_id, _NO_NODE_FACTS).dedications)
        for node_id, _ in placed.allocations
    }
    if not any(windows.values()):  # no dedication on its nodes: one shared piece
        return [
            UsageRecord(
                record_key=f"{base}/0",
                usage="usage",
                units=sum(count for _, count in placed.allocations),
                start_ms=start,
                end_ms=end,
                **common,  # type: ignore[arg-type]
            )
        ]
    cuts = sorted(
        {start, end}
        | {
            edge
            for node_windows in windows.values()
            for _, w_start, w_end in node_windows
            for edge in (w_start, w_end)
            if edge is not None and start < edge < end
        }
    )
    pieces: list[tuple[int, int, int, int]] = []  # start, end, shared units, covered units
    for seg_start, seg_end in itertools.pairwise(cuts):
        covered = sum(
            count
            for node_id, count in placed.allocations
            if _dedicated_to(windows[node_id], placed.tenant, seg_start)
        )
        shared = sum(count for _, count in placed.allocations) - covered
        if pieces and pieces[-1][2:] == (shared, covered):
            pieces[-1] = (pieces[-1][0], seg_end, shared, covered)
        else:
            pieces.append((seg_start, seg_end, shared, covered))
    if not pieces:  # a zero-length attempt: one empty record keeps it visible
        pieces = [(start, end, sum(c for _, c in placed.allocations), 0)]
    records: list[UsageRecord] = []
    for index, (seg_start, seg_end, shared, covered) in enumerate(pieces):
        for usage, units in (("usage", shared), ("covered", covered)):
            if units or (usage == "usage" and not covered):
                suffix = "" if usage == "usage" else "c"
                records.append(
                    UsageRecord(
                        record_key=f"{base}/{index}{suffix}",
                        usage=usage,
                        units=units,
                        start_ms=seg_start,
                        end_ms=seg_end,
                        **common,  # type: ignore[arg-type]
                    )
                )
    return records


def job_records(facts: Iterable[JobFact], nodes: Mapping[str, NodeFacts]) -> list[UsageRecord]:
    """Every usage record one job's facts imply (all attempts)."""
    facts = list(facts)
    by_attempt: dict[int, list[JobFact]] = {}
    for fact in facts:
        if fact.kind == "placed" and fact.attempt is not None:
            by_attempt.setdefault(fact.attempt, []).append(fact)
    placements = {a: p for a, ps in by_attempt.items() if (p := _latest(ps)) is not None}
    reports: dict[int, list[JobFact]] = {}
    for fact in facts:
        if fact.kind != "placed":
            attempt = _attempt_of(fact, placements)
            if attempt is not None:
                reports.setdefault(attempt, []).append(fact)
    records: list[UsageRecord] = []
    for attempt in sorted(placements):
        records.extend(_attempt_records(placements[attempt], reports.get(attempt, []), nodes))
    return records


# ---------------------------------------------------------------------- nodes


def node_records(node_id: str, facts: NodeFacts) -> list[UsageRecord]:
    """The dedication records of one node: one per window, ``end_ms`` None while open."""
    return [
        UsageRecord(
            record_key=f"node/{node_id}/{start}",
            usage="dedicated",
            tenant=tenant,
            model=facts.info.model,
            site_id=facts.info.site_id,
            units=1,
            start_ms=start,
            end_ms=end,
            node_id=node_id,
        )
        for tenant, start, end in dedication_windows(facts.dedications)
    ]


# ---------------------------------------------------------------------- ledger diff


@dataclass(frozen=True, slots=True)
class LedgerChange:
    """What the ledger must append so its current records equal ``wanted``."""

    reversals: list[str]
    """Record keys whose current record is reversed."""
    records: list[UsageRecord]
    """New records (a changed record appears in both lists)."""


def diff_records(current: Mapping[str, UsageRecord], wanted: Iterable[UsageRecord]) -> LedgerChange:
    """Reverse what changed or vanished, record what changed or is new; equal ones stay."""
    wanted_by_key = {r.record_key: r for r in wanted}
    reversals = [key for key, record in current.items() if wanted_by_key.get(key) != record]
    records = [r for key, r in wanted_by_key.items() if current.get(key) != r]
    return LedgerChange(sorted(reversals), sorted(records, key=lambda r: r.record_key))
