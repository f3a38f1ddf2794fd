"""A scheduler restart in the middle of a flow loses no job and places none twice."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import request
from aifactory.contracts.jobs.v1 import (
    JobAccepted,
    JobFinished,
    JobPage,
    JobPlaced,
    JobRequeued,
    JobSubmitted,
    ListJobs,
)
from aifactory.scheduling.domain import job_id_for
from aifactory.store.events import NewEvent
from aifactory.testing.waiting import wait_until

from ..conftest import spec, state_event
from .conftest import Feed, JobEvents, SchedulerFactory
from .test_service import ready, submit

pytestmark = pytest.mark.integration
AT = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC)


async def test_restart_mid_flow_loses_nothing_and_places_nothing_twice(
    start_scheduling: SchedulerFactory, feed: Feed, nats_client: Client, job_events: JobEvents
) -> None:
    """Jobs placed before a stop keep their nodes; what happened while it was down (submissions, a node failure, a finish) is applied once after the restart."""
    first = await start_scheduling()
    await ready(first, feed, nats_client)
    ids = []
    for n in range(3):
        accepted = await submit(first, nats_client, spec(f"before-{n}", sites=("fra1",)))
        ids.append(accepted.job_id)
    await job_events.wait(JobPlaced, count=3)
    victim = job_events.nodes_of(ids[0])[0]
    await first.stop()

    rack = "fra1-r1" if victim.startswith("b1") else "fra1-r2"
    later = [spec(f"after-{n}", sites=("fra1",)) for n in range(3)]
    await feed.send([NewEvent(JobSubmitted(job=s), tenant="acme") for s in later])
    await feed.send([state_event(victim, "fra1", rack, "available", "failed")])
    await feed.send(
        [NewEvent(JobFinished(job_id=ids[1], tenant="acme", finished_at=AT), tenant="acme")]
    )

    second = await start_scheduling()
    ns = second.bus.namespace
    after_ids = [job_id_for("acme", f"after-{n}") for n in range(3)]
    await job_events.wait(JobAccepted, count=6)
    await job_events.wait(JobRequeued, ids[0])

    async def jobs() -> list[object]:
        page = await request(nats_client, ListJobs(tenant="acme"), JobPage, namespace=ns)
        return page.jobs

    def settled(found: list[object]) -> bool:
        states = Counter(j.state for j in found)  # type: ignore[attr-defined]
        return len(found) == 6 and states["placed"] == 3 and states["finished"] == 1

    found = await wait_until(jobs, settled, timeout=20, what="3 placed, 1 finished, 2 queued")
    accelerators = Counter(
        (a.node_id, i)
        for j in found
        if j.state == "placed"  # type: ignore[attr-defined]
        for a in j.allocations  # type: ignore[attr-defined]
        for i in a.accelerator_indices
    )
    assert accelerators
    assert max(accelerators.values()) == 1
    assert victim not in {node for node, _ in accelerators}
    assert Counter(e.job_id for e in job_events.of(JobAccepted)) == Counter(ids + after_ids)
    assert len(job_events.of(JobPlaced, ids[2])) == 1
