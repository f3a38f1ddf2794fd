"""Lifecycle over real NATS: event submissions, workload reports, preemption, keys, cancel, queue."""

from __future__ import annotations

import datetime as dt

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, request
from aifactory.contracts.dlq import DeadLetter
from aifactory.contracts.envelope import read_message
from aifactory.contracts.jobs.v1 import (
    CancelJob,
    ExplainQueue,
    GetJob,
    JobCancelled,
    JobFinished,
    JobPlaced,
    JobPreempted,
    JobRejected,
    JobRequeued,
    JobStarted,
    JobStatus,
    JobSubmitted,
    JobView,
    QueueExplanation,
    SetQuota,
    TenantQuota,
)
from aifactory.contracts.keys.v1 import KeyEnabled, KeyRevoked
from aifactory.scheduling.app import SchedulingService
from aifactory.scheduling.domain import job_id_for
from aifactory.store.events import NewEvent
from aifactory.testing.waiting import wait_until

from ..conftest import spec
from .conftest import Feed, JobEvents
from .test_service import ready, submit

pytestmark = pytest.mark.integration
AT = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


async def test_published_submissions_are_placed_or_rejected_as_events(
    scheduling: SchedulingService, feed: Feed, nats_client: Client, job_events: JobEvents
) -> None:
    """job_submitted from JetStream places a valid job, turns an invalid one into job_rejected, and a repeat into nothing."""
    await ready(scheduling, feed, nats_client)
    good, bad = spec("ev-1", sites=("iad1",)), spec("ev-2", tenant="nobody")
    await feed.send(
        [
            NewEvent(JobSubmitted(job=good), tenant="acme"),
            NewEvent(JobSubmitted(job=bad), tenant="nobody"),
            NewEvent(JobSubmitted(job=good), tenant="acme"),
        ]
    )
    good_id, bad_id = job_id_for("acme", "ev-1"), job_id_for("nobody", "ev-2")
    (placed,) = await job_events.wait(JobPlaced, good_id)
    assert placed.site_id == "iad1"
    (rejected,) = await job_events.wait(JobRejected, bad_id)
    assert rejected.reason == "unknown_tenant"
    view = await request(
        nats_client, GetJob(job_id=good_id), JobView, namespace=scheduling.bus.namespace
    )
    assert (view.state, view.attempt, view.site_id) == ("placed", 1, "iad1")
    assert len(job_events.of(JobPlaced, good_id)) == 1


async def test_reports_drive_the_lifecycle_and_unknown_jobs_are_dead_lettered(
    scheduling: SchedulingService,
    feed: Feed,
    nats_client: Client,
    job_events: JobEvents,
) -> None:
    """started -> running, finished frees the node for the queued job; a report for an unknown job goes to the dead-letter subject with the reason."""
    await ready(scheduling, feed, nats_client)
    ns = scheduling.bus.namespace
    first = await submit(scheduling, nats_client, spec("r-1", sites=("iad1",)))
    second = await submit(scheduling, nats_client, spec("r-2", sites=("iad1",)))
    assert (first.state, second.state) == ("placed", "queued")
    dead = await nats_client.subscribe(ns.subject("factory.dlq.scheduling"))
    await feed.send(
        [
            NewEvent(
                JobStarted(job_id=first.job_id, tenant="acme", attempt=1, started_at=AT),
                tenant="acme",
            ),
            NewEvent(
                JobFinished(job_id=first.job_id, tenant="acme", attempt=1, finished_at=AT),
                tenant="acme",
            ),
            NewEvent(JobStarted(job_id="j-unknown", tenant="acme", started_at=AT), tenant="acme"),
        ]
    )
    (placed,) = await job_events.wait(JobPlaced, second.job_id)
    assert [a.node_id for a in placed.allocations] == ["h1"]
    view = await request(nats_client, GetJob(job_id=first.job_id), JobView, namespace=ns)
    assert view.state == "finished"
    message = await dead.next_msg(timeout=20)
    letter = read_message(message.headers, message.data).data
    assert isinstance(letter, DeadLetter)
    assert letter.error_class == "UnknownJob"
    assert "j-unknown" in letter.error_message
    await dead.unsubscribe()


async def test_critical_job_preempts_preemptible_ones(
    scheduling: SchedulingService, feed: Feed, nats_client: Client, job_events: JobEvents
) -> None:
    """A critical job that does not fit preempts the preemptible job on the node it needs, which is requeued with the reason."""
    await ready(scheduling, feed, nats_client)
    low = await submit(
        scheduling,
        nats_client,
        spec("low", tenant="globex", priority="preemptible", sites=("iad1",)),
    )
    assert low.state == "placed"
    urgent = await submit(
        scheduling, nats_client, spec("urgent", priority="critical", sites=("iad1",))
    )
    assert urgent.state == "placed"
    (preempted,) = await job_events.wait(JobPreempted, low.job_id)
    assert (preempted.by_job_id, preempted.node_ids) == (urgent.job_id, ["h1"])
    (requeued,) = await job_events.wait(JobRequeued, low.job_id)
    assert requeued.reason == "preempted"
    explained = await request(
        nats_client, ExplainQueue(), QueueExplanation, namespace=scheduling.bus.namespace
    )
    assert [(e.job_id, e.reason) for e in explained.entries] == [
        (low.job_id, "insufficient_capacity")
    ]


async def test_key_revocation_preempts_and_holds_the_tenants_jobs(
    scheduling: SchedulingService, feed: Feed, nats_client: Client, job_events: JobEvents
) -> None:
    """Revoking a dataset key requeues the running job (key_revoked) and keeps it waiting until the key is enabled."""
    await ready(scheduling, feed, nats_client)
    job = await submit(scheduling, nats_client, spec("keyed", key="ds-1", sites=("iad1",)))
    assert job.state == "placed"
    await feed.send(
        [NewEvent(KeyRevoked(tenant="acme", key_id="ds-1", by="operator:x", at=AT), tenant="acme")]
    )
    (preempted,) = await job_events.wait(JobPreempted, job.job_id)
    assert preempted.by_job_id is None
    (requeued,) = await job_events.wait(JobRequeued, job.job_id)
    assert requeued.reason == "key_revoked"
    ns = scheduling.bus.namespace

    async def reason() -> str:
        explained = await request(
            nats_client, ExplainQueue(tenant="acme"), QueueExplanation, namespace=ns
        )
        return explained.entries[0].reason if explained.entries else ""

    assert await wait_until(reason, lambda r: r == "key_unusable", what="held") == "key_unusable"
    await feed.send(
        [NewEvent(KeyEnabled(tenant="acme", key_id="ds-1", by="operator:x", at=AT), tenant="acme")]
    )
    await job_events.wait(JobPlaced, job.job_id, count=2)


async def test_cancel_and_authorisation(
    scheduling: SchedulingService, feed: Feed, nats_client: Client, job_events: JobEvents
) -> None:
    """A tenant cannot cancel another's job nor set quotas; the owner cancels, which frees the node; an unknown id is not_found."""
    await ready(scheduling, feed, nats_client)
    ns = scheduling.bus.namespace
    job = await submit(scheduling, nats_client, spec("c-1", sites=("iad1",)))
    with pytest.raises(CommandFailed) as foreign:
        await request(
            nats_client,
            CancelJob(job_id=job.job_id, actor="x"),
            JobStatus,
            namespace=ns,
            tenant="globex",
        )
    assert foreign.value.error.code == "not_found"
    with pytest.raises(CommandFailed) as quota:
        await request(
            nats_client,
            SetQuota(tenant="acme", model="*", accelerators=1, actor="x"),
            TenantQuota,
            namespace=ns,
            tenant="acme",
        )
    assert quota.value.error.code == "unauthorized"
    status = await request(
        nats_client,
        CancelJob(job_id=job.job_id, actor="alice", reason="done"),
        JobStatus,
        namespace=ns,
        tenant="acme",
    )
    assert (status.previous_state, status.state, status.changed) == ("placed", "cancelled", True)
    (cancelled,) = await job_events.wait(JobCancelled, job.job_id)
    assert cancelled.actor == "alice"
    again = await request(
        nats_client, CancelJob(job_id=job.job_id, actor="alice"), JobStatus, namespace=ns
    )
    assert again.changed is False
    with pytest.raises(CommandFailed) as unknown:
        await request(
            nats_client, CancelJob(job_id="j-none", actor="alice"), JobStatus, namespace=ns
        )
    assert unknown.value.error.code == "not_found"
