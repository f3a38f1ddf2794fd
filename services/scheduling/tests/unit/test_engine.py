"""The engine's queue rules: priority, fair share, FIFO, backfill, preemption, requeues, keys."""

from __future__ import annotations

import datetime as dt

from aifactory.scheduling.engine import Abandoned, Placed, Preempted, Queued, Requeued

from .factory import NOW, engine_with, job


def placed_ids(outcomes: list[object]) -> list[str]:
    return [o.job.job_id for o in outcomes if isinstance(o, Placed)]  # type: ignore[attr-defined]


def test_pass_serves_priority_then_fair_share_then_fifo() -> None:
    """Freed capacity goes to critical first, then to the tenant using less, then in submission order."""
    engine = engine_with({"r1": ("fra1", 8, 4, 8)})
    for n in range(4):
        engine.submit(job(f"fill-{n}", tenant="acme"), NOW)
    engine.submit(job("acme-std", tenant="acme"), NOW)
    engine.submit(job("globex-std-1", tenant="globex"), NOW)
    engine.submit(job("globex-std-2", tenant="globex"), NOW)
    engine.submit(job("acme-crit", tenant="acme", priority="critical"), NOW)
    for n in range(3):
        engine.report_ended(engine.jobs[f"fill-{n}"], None, "finished")
    assert placed_ids(engine.schedule_pass(NOW)) == ["acme-crit", "globex-std-1", "globex-std-2"]


def test_backfill_only_when_it_ends_before_the_reserved_job_can_start() -> None:
    """A blocked head reserves its model: a short job behind it backfills, a long one waits behind it."""
    engine = engine_with({"r1": ("fra1", 8, 2, 8)})
    engine.submit(job("running", runtime_s=600), NOW)
    engine.submit(job("head", total=16, runtime_s=600), NOW)
    (long,) = engine.submit(job("long", runtime_s=7200), NOW)
    (short,) = engine.submit(job("short", runtime_s=300), NOW)
    assert (long.job.state, long.job.reason) == ("queued", "waiting_behind")
    assert short.job.state == "placed"
    engine.report_ended(engine.jobs["short"], None, "finished")
    assert placed_ids(engine.schedule_pass(NOW)) == []
    assert engine.jobs["long"].reason == "waiting_behind"
    assert engine.jobs["head"].reason == "insufficient_capacity"
    engine.report_ended(engine.jobs["running"], None, "finished")
    assert placed_ids(engine.schedule_pass(NOW)) == ["head"]


def test_critical_preempts_only_the_preemptible_job_it_needs() -> None:
    """A critical job takes the node of one preemptible job, which is requeued; the other keeps running."""
    engine = engine_with({"r1": ("fra1", 8, 2, 8)})
    engine.submit(job("p1", tenant="globex", priority="preemptible"), NOW)
    engine.submit(job("p2", tenant="globex", priority="preemptible"), NOW)
    outcomes = engine.submit(job("crit", priority="critical"), NOW)
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Preempted", "Requeued", "Placed"]
    assert isinstance(outcomes[0], Preempted)
    assert outcomes[0].by_job_id == "crit"
    assert engine.jobs["p1"].state == "queued"
    assert engine.jobs["p2"].state == "placed"


def test_standard_job_never_preempts() -> None:
    """A standard job that does not fit waits even when preemptible jobs hold the capacity."""
    engine = engine_with({"r1": ("fra1", 8, 1, 8)})
    engine.submit(job("p", tenant="globex", priority="preemptible"), NOW)
    (outcome,) = engine.submit(job("s"), NOW)
    assert isinstance(outcome, Queued)


def test_node_failures_requeue_until_the_retry_limit() -> None:
    """Each failure of its node requeues the gang; beyond max_requeues it is abandoned."""
    engine = engine_with({"r1": ("fra1", 8, 1, 8)})
    engine.max_requeues = 1
    engine.submit(job("j"), NOW)
    (requeued,) = engine.set_node_state("r1-n00", "failed", "xid", NOW)
    assert isinstance(requeued, Requeued)
    assert requeued.reason == "node_failed"
    engine.set_node_state("r1-n00", "available", "", NOW)
    assert placed_ids(engine.schedule_pass(NOW)) == ["j"]
    (abandoned,) = engine.set_node_state("r1-n00", "draining", "", NOW)
    assert isinstance(abandoned, Abandoned)
    assert "j" not in engine.jobs


def test_cordon_keeps_running_jobs_but_takes_no_new_work() -> None:
    """A cordoned node keeps its job and is not used for the next one."""
    engine = engine_with({"r1": ("fra1", 8, 1, 8)})
    engine.submit(job("a", total=4, width=4), NOW)
    assert engine.set_node_state("r1-n00", "cordoned", "", NOW) == []
    (waiting,) = engine.submit(job("b", total=4, width=4), NOW)
    assert isinstance(waiting, Queued)
    assert engine.jobs["a"].state == "placed"


def test_key_hold_preempts_and_lift_allows_placing_again() -> None:
    """A revoked key requeues its running job and holds it; lifting the hold lets the next pass place it."""
    engine = engine_with({"r1": ("fra1", 8, 1, 8)})
    engine.submit(job("k", key="ds"), NOW)
    outcomes = engine.hold_key("acme", "ds", "is revoked", NOW)
    assert [type(o).__name__ for o in outcomes] == ["Preempted", "Requeued"]
    engine.schedule_pass(NOW)
    assert engine.jobs["k"].reason == "key_unusable"
    engine.lift_key("acme", "ds")
    assert placed_ids(engine.schedule_pass(NOW)) == ["k"]


def test_quota_blocks_until_usage_drops() -> None:
    """A job over the tenant's remaining quota waits with reason quota and places once usage drops."""
    engine = engine_with({"r1": ("fra1", 8, 2, 8)}, quota=8)
    engine.submit(job("a"), NOW)
    (waiting,) = engine.submit(job("b"), NOW)
    assert waiting.job.reason == "quota"
    engine.report_ended(engine.jobs["a"], None, "finished")
    assert placed_ids(engine.schedule_pass(NOW + dt.timedelta(seconds=1))) == ["b"]


def test_stale_reports_of_an_earlier_placement_are_ignored() -> None:
    """A finished report for attempt 1 does not end the job's second placement."""
    engine = engine_with({"r1": ("fra1", 8, 2, 8)})
    engine.submit(job("j"), NOW)
    node = next(iter(engine.jobs["j"].masks))
    engine.set_node_state(node, "failed", "", NOW)
    engine.schedule_pass(NOW)
    assert engine.jobs["j"].attempt == 2
    assert engine.report_ended(engine.jobs["j"], 1, "finished") == []
    assert engine.jobs["j"].state == "placed"
