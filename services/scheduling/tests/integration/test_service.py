"""The scheduling service over a real nats-server, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, request
from aifactory.contracts.jobs.v1 import (
    JobAcceptance,
    JobAccepted,
    JobPlaced,
    JobQueued,
    JobRequeued,
    SetQuota,
    SubmitJob,
    TenantQuota,
)
from aifactory.scheduling.app import SchedulingService
from aifactory.testing.waiting import wait_until

from ..conftest import small_factory, spec, state_event
from .conftest import Feed, JobEvents

pytestmark = pytest.mark.integration


async def ready(service: SchedulingService, feed: Feed, nc: Client, nodes: int = 5) -> None:
    """Import the small factory, give acme and globex quotas, wait for the capacity view."""
    await feed.send(small_factory())

    async def count() -> int:
        return len(service.scheduler.engine.index.nodes)

    await wait_until(count, lambda n: n >= nodes, what="capacity view")
    for tenant in ("acme", "globex"):
        await request(
            nc,
            SetQuota(tenant=tenant, model="*", accelerators=1000, actor="ops"),
            TenantQuota,
            namespace=service.bus.namespace,
        )


async def submit(service: SchedulingService, nc: Client, job: object) -> JobAcceptance:
    return await request(nc, SubmitJob(job=job), JobAcceptance, namespace=service.bus.namespace)  # type: ignore[arg-type]


async def test_submit_places_and_resubmission_returns_the_same_job(
    scheduling: SchedulingService, feed: Feed, nats_client: Client, job_events: JobEvents
) -> None:
    """A submitted job is accepted and placed on a whole node; the same client id again returns that job and emits nothing new."""
    await ready(scheduling, feed, nats_client)
    first = await submit(scheduling, nats_client, spec("train-1", sites=("fra1",)))
    assert (first.state, first.created) == ("placed", True)
    (placed,) = await job_events.wait(JobPlaced, first.job_id)
    assert placed.site_id == "fra1"
    assert [a.accelerator_indices for a in placed.allocations] == [list(range(8))]
    again = await submit(scheduling, nats_client, spec("train-1", sites=("fra1",)))
    assert (again.job_id, again.created, again.state) == (first.job_id, False, "placed")
    assert len(job_events.of(JobAccepted, first.job_id)) == 1


async def test_node_failure_requeues_and_places_elsewhere(
    scheduling: SchedulingService, feed: Feed, nats_client: Client, job_events: JobEvents
) -> None:
    """When a node of a running gang fails, the gang is requeued (node_failed) and placed again on healthy nodes."""
    await ready(scheduling, feed, nats_client)
    job = await submit(scheduling, nats_client, spec("gang", accelerators=16, sites=("fra1",)))
    await job_events.wait(JobPlaced, job.job_id)
    first_nodes = job_events.nodes_of(job.job_id)
    assert len(first_nodes) == 2
    lost = first_nodes[0]
    rack = "fra1-r1" if lost.startswith("b1") else "fra1-r2"
    await feed.send([state_event(lost, "fra1", rack, "available", "failed", reason="xid 79")])
    (requeued,) = await job_events.wait(JobRequeued, job.job_id)
    assert (requeued.reason, requeued.requeues) == ("node_failed", 1)
    await job_events.wait(JobPlaced, job.job_id, count=2)
    second = job_events.of(JobPlaced, job.job_id)[-1]
    assert lost not in [a.node_id for a in second.allocations]
    assert second.attempt == 2


async def test_rejections_are_typed(
    scheduling: SchedulingService, feed: Feed, nats_client: Client
) -> None:
    """Unknown tenant, unknown model, per-node above node size and larger-than-factory are refused with their reason."""
    await ready(scheduling, feed, nats_client)
    cases = {
        "unknown_tenant": spec("a", tenant="nobody"),
        "unknown_model": spec("b", models=("H100",)),
        "invalid_shape": spec("c", accelerators=16, per_node=16),
        "exceeds_factory": spec("d", accelerators=64, per_node=8, sites=("fra1",)),
    }
    for reason, job in cases.items():
        with pytest.raises(CommandFailed) as refused:
            await submit(scheduling, nats_client, job)
        assert refused.value.error.code == "invalid_request"
        assert refused.value.error.details["reason"] == reason


async def test_capacity_blocked_job_waits_with_its_reason(
    scheduling: SchedulingService, feed: Feed, nats_client: Client, job_events: JobEvents
) -> None:
    """A job that does not fit now is queued with insufficient_capacity."""
    await ready(scheduling, feed, nats_client)
    big = await submit(scheduling, nats_client, spec("big", accelerators=32, sites=("fra1",)))
    assert big.state == "placed"
    waiting = await submit(scheduling, nats_client, spec("next", sites=("fra1",)))
    assert (waiting.state, waiting.reason) == ("queued", "insufficient_capacity")
    (queued,) = await job_events.wait(JobQueued, waiting.job_id)
    assert queued.reason == "insufficient_capacity"
