"""The metering rules: windows, corrections, node failures, dedications, order independence."""

from __future__ import annotations

import itertools
import random

from aifactory.billing.metering import (
    DedicationFact,
    JobFact,
    NodeFacts,
    UsageRecord,
    dedication_windows,
    diff_records,
    job_records,
    node_records,
)

H = 3_600_000
M = 60_000
T0 = 1_800_000_000_000


def fact(kind: str, at: int, *, attempt: int | None = 1, reported: int | None = None,
         eid: str | None = None, nodes: tuple[tuple[str, int], ...] = (("n1", 4),),
         node_failure: bool = False) -> JobFact:  # fmt: skip
    """A fact about job ``j``."""
    return JobFact(
        event_id=eid or f"{kind}-{attempt}-{at}",
        job_id="j",
        kind=kind,
        at_ms=at,
        reported_ms=at if reported is None else reported,
        attempt=attempt,
        tenant="acme",
        model="GB200",
        site_id="fra1",
        priority="standard",
        allocations=nodes if kind == "placed" else (),
        node_failure=node_failure,
    )


def windows(records: list[UsageRecord]) -> list[tuple[str, int | None, int, int | None]]:
    """(usage, attempt, units, duration) per record."""
    return [
        (r.usage, r.attempt, r.units, None if r.end_ms is None else r.end_ms - r.start_ms)
        for r in records
    ]


def test_attempt_is_metered_from_its_start_report_to_its_end() -> None:
    """A placed, started, finished attempt yields one record from the start report to the finish."""
    records = job_records(
        [fact("placed", T0), fact("started", T0 + 5 * M), fact("finished", T0 + 2 * H)], {}
    )
    assert windows(records) == [("usage", 1, 4, 2 * H - 5 * M)]
    assert records[0].record_key == "job/j/1/0"


def test_without_a_start_report_metering_starts_at_placement() -> None:
    """An attempt never reported started is metered from its placement."""
    records = job_records([fact("placed", T0), fact("requeued", T0 + H)], {})
    assert windows(records) == [("usage", 1, 4, H)]


def test_running_attempt_yields_nothing_yet() -> None:
    """An attempt with no ending and no node failure is not metered yet."""
    assert job_records([fact("placed", T0), fact("started", T0)], {}) == []


def test_finish_seen_before_start_gives_the_right_duration() -> None:
    """The facts of an attempt give the same records in every arrival order (and with duplicates)."""
    facts = [fact("placed", T0), fact("started", T0 + M), fact("finished", T0 + 3 * H)]
    expected = job_records(facts, {})
    for order in itertools.permutations([*facts, facts[1]]):
        assert job_records(order, {}) == expected
    assert windows(expected) == [("usage", 1, 4, 3 * H - M)]


def test_earliest_ending_wins_and_a_later_report_corrects_an_earlier_one() -> None:
    """Of different endings the earliest counts; of two reports of one kind, the one published last."""
    facts = [
        fact("placed", T0),
        fact("finished", T0 + 3 * H, reported=T0 + 3 * H, eid="f1"),
        fact("finished", T0 + 2 * H, reported=T0 + 4 * H, eid="f2"),  # a correction
        fact("cancelled", T0 + 5 * H, attempt=None),
    ]
    assert windows(job_records(facts, {})) == [("usage", 1, 4, 2 * H)]


def test_report_without_attempt_belongs_to_the_latest_placement_before_it() -> None:
    """Attempt-less start and finish reports go to the placement in effect at their instant."""
    facts = [
        fact("placed", T0),
        fact("preempted", T0 + H),
        fact("placed", T0 + 2 * H, attempt=2),
        fact("started", T0 + 2 * H + M, attempt=None),
        fact("finished", T0 + 3 * H, attempt=None),
    ]
    assert windows(job_records(facts, {})) == [("usage", 1, 4, H), ("usage", 2, 4, H - M)]


def test_node_failure_stops_metering_at_the_failure_instant() -> None:
    """A failure of one of the attempt's nodes inside its window ends it there, marked node_failure."""
    nodes = {"n1": NodeFacts(failures_ms=(T0 - H, T0 + 20 * M))}
    facts = [fact("placed", T0), fact("started", T0 + 10 * M), fact("requeued", T0 + 21 * M)]
    (record,) = job_records(facts, nodes)
    assert record.end_ms == T0 + 20 * M
    assert record.node_failure is True


def test_node_failure_ends_an_attempt_with_no_ending_reported() -> None:
    """A failure ends a running attempt even before the scheduler reports the requeue."""
    nodes = {"n1": NodeFacts(failures_ms=(T0 + H,))}
    (record,) = job_records([fact("placed", T0)], nodes)
    assert (record.end_ms, record.node_failure) == (T0 + H, True)


def test_failure_after_the_end_changes_nothing() -> None:
    """A node failure after the attempt finished does not touch it."""
    nodes = {"n1": NodeFacts(failures_ms=(T0 + 5 * H,))}
    (record,) = job_records([fact("placed", T0), fact("finished", T0 + H)], nodes)
    assert (record.end_ms, record.node_failure) == (T0 + H, False)


def test_requeue_for_node_failure_is_marked() -> None:
    """A requeue with reason node_failed marks the record node_failure for the credit policy."""
    facts = [fact("placed", T0), fact("requeued", T0 + M, node_failure=True)]
    assert job_records(facts, {})[0].node_failure is True


def test_finish_before_start_is_an_unpriced_negative_duration() -> None:
    """An ending before the start yields one record with reason negative_duration."""
    facts = [fact("placed", T0), fact("started", T0 + 2 * H), fact("finished", T0 + H)]
    (record,) = job_records(facts, {})
    assert record.unpriced_reason == "negative_duration"
    assert record.end_ms - record.start_ms == -H  # type: ignore[operator]


def test_time_on_a_dedicated_node_is_covered_and_split_where_dedication_changes() -> None:
    """Accelerators on a node dedicated to the tenant are covered, from the dedication instant on."""
    nodes = {
        "n2": NodeFacts(dedications=(DedicationFact("d", "n2", T0 + H, "acme"),)),
    }
    placed = fact("placed", T0, nodes=(("n1", 4), ("n2", 4)))
    records = job_records([placed, fact("finished", T0 + 3 * H)], nodes)
    assert windows(records) == [
        ("usage", 1, 8, H),
        ("usage", 1, 4, 2 * H),
        ("covered", 1, 4, 2 * H),
    ]


def test_dedication_to_another_tenant_covers_nothing() -> None:
    """A node dedicated to someone else does not cover this tenant's usage."""
    nodes = {"n1": NodeFacts(dedications=(DedicationFact("d", "n1", T0 - H, "globex"),))}
    records = job_records([fact("placed", T0), fact("finished", T0 + H)], nodes)
    assert windows(records) == [("usage", 1, 4, H)]


def test_dedication_windows_from_changes_in_any_order() -> None:
    """Dedication changes give the same windows whatever order they are listed in."""
    changes = [
        DedicationFact("a", "d1", T0, "acme"),
        DedicationFact("b", "d1", T0 + H, "acme"),  # repeated: no new window
        DedicationFact("c", "d1", T0 + 2 * H, None),
        DedicationFact("d", "d1", T0 + 3 * H, "globex"),
    ]
    expected = [("acme", T0, T0 + 2 * H), ("globex", T0 + 3 * H, None)]
    rng = random.Random(3)
    for _ in range(10):
        rng.shuffle(changes)
        assert dedication_windows(changes) == expected


def test_node_records_are_one_per_dedication_window() -> None:
    """A node's dedication windows become node-hour records, the open one without an end."""
    facts = NodeFacts(
        dedications=(
            DedicationFact("a", "d1", T0, "acme"),
            DedicationFact("b", "d1", T0 + H, "globex"),
        )
    )
    records = node_records("d1", facts)
    assert [(r.tenant, r.usage, r.start_ms, r.end_ms) for r in records] == [
        ("acme", "dedicated", T0, T0 + H),
        ("globex", "dedicated", T0 + H, None),
    ]


def test_diff_reverses_changed_and_vanished_records_and_keeps_equal_ones() -> None:
    """The ledger diff reverses what changed or vanished and records what changed or is new."""
    old = job_records([fact("placed", T0), fact("finished", T0 + 2 * H)], {})[0]
    new = job_records([fact("placed", T0), fact("finished", T0 + H)], {})[0]
    other = UsageRecord("job/k/1/0", "usage", "acme", "GB200", "fra1", 1, T0, T0 + H)
    gone = UsageRecord("job/j/9/0", "usage", "acme", "GB200", "fra1", 1, T0, T0 + H)
    change = diff_records({old.record_key: old, other.record_key: other, gone.record_key: gone},
                          [new, other])  # fmt: skip
    assert change.reversals == ["job/j/1/0", "job/j/9/0"]
    assert change.records == [new]
    assert diff_records({other.record_key: other}, [other]).records == []
