"""Reading facts out of events: which instant each event contributes."""

from __future__ import annotations

import datetime as dt

from aifactory.billing.facts import ExtractedFacts, extract, from_ms, to_ms
from aifactory.contracts.envelope import build_message, read_message
from aifactory.contracts.health.v1 import NodeHealthChanged
from aifactory.contracts.jobs.v1 import JobRequeued

from ..scenario import at, dedication

T = at(10, 0, 30)


def _facts(
    data, *, time: dt.datetime | None = None, tenant: str | None = None, scope: str | None = None
) -> ExtractedFacts:
    message = build_message(data, source="/test", tenant=tenant, scope=scope, time=time)
    extracted = ExtractedFacts()
    extract(read_message(message.headers, message.body), extracted)
    return extracted


def test_millisecond_conversion_is_exact() -> None:
    """Instants convert to integer epoch milliseconds and back without float rounding."""
    instant = dt.datetime(2026, 11, 3, 10, 5, 7, 123000, tzinfo=dt.UTC)
    assert from_ms(to_ms(instant)) == instant


def test_failed_and_unreachable_verdicts_are_failures_at_first_seen() -> None:
    """A failed or unreachable verdict is a failure at first_seen; a degraded one is not a failure."""
    for verdict, expected in (("failed", 1), ("unreachable", 1), ("degraded", 0)):
        facts = _facts(
            NodeHealthChanged(node_id="n4", site_id="fra1", verdict=verdict,  # type: ignore[arg-type]
                              first_seen=T, observed_at=T + dt.timedelta(minutes=2)),
            scope="fra1",
        )  # fmt: skip
        assert len(facts.node_facts) == expected
        if expected:
            assert facts.node_facts[0]["kind"] == "failure"
            assert facts.node_facts[0]["at_ms"] == to_ms(T)


def test_dedication_change_happens_at_the_event_time() -> None:
    """A dedication change has no time field: its CloudEvents time is the instant, one fact per node."""
    facts = _facts(dedication("d1", "acme", None), time=T, scope="fra1")
    assert [(f["kind"], f["node_id"], f["tenant"], f["at_ms"]) for f in facts.node_facts] == [
        ("dedication", "d1", "acme", to_ms(T))
    ]


def test_requeue_for_node_failure_is_marked() -> None:
    """A requeue with reason node_failed is an ending marked node_failure; other reasons are not."""
    for reason, marked in (("node_failed", True), ("preempted", False)):
        facts = _facts(
            JobRequeued(job_id="j3", tenant="acme", attempt=1, reason=reason,  # type: ignore[arg-type]
                        requeues=1, requeued_at=T),
            tenant="acme",
        )  # fmt: skip
        (fact,) = facts.job_facts
        assert (fact["kind"], fact["node_failure"], fact["at_ms"]) == ("requeued", marked, to_ms(T))
