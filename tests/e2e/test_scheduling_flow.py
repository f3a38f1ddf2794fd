"""Inventory and scheduling together over a real nats-server.

Inventory runs as its own process (``python -m aifactory.inventory``); the scheduler
runs in-process so the test can stop and restart it. The flow: import a factory ->
submit -> placed; the same submission again -> the same job; a fatal health verdict
-> inventory fails the node -> the gang is requeued and placed elsewhere; a critical
job preempts a preemptible gang; the scheduler restarts while a node is drained and
a job is submitted, and afterwards nothing is lost and nothing is placed twice.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client

from aifactory.bus.publisher import EventPublisher
from aifactory.bus.rpc import request
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.contracts.health.v1 import HealthReason, NodeHealthChanged
from aifactory.contracts.inventory.v1 import (
    DrainNode,
    ImportFactory,
    ImportSummary,
    NodeStateResult,
)
from aifactory.contracts.jobs.v1 import (
    JobAcceptance,
    JobAccepted,
    JobPage,
    JobPlaced,
    JobPreempted,
    JobRequeued,
    JobSubmitted,
    ListJobs,
    SetQuota,
    SubmitJob,
    TenantQuota,
)
from aifactory.scheduling.app import build_service
from aifactory.scheduling.config import SchedulingSettings
from aifactory.scheduling.custody import StaticKeyCustody
from aifactory.scheduling.domain import job_id_for
from aifactory.store.events import NewEvent
from aifactory.testing.processes import ServiceProcess
from aifactory.testing.waiting import wait_until

from ._factory import PROBES, JobEvents, job_events, job_spec

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)
FACTORY = """\
version: 1
sites:
  - id: fra1
    name: Frankfurt 1
    region: eu-central
    jurisdiction: EU/DE
racks:
  - id: fra1-r1
    site: fra1
    kind: HGX-B200
    nvlink_domain_size: 8
  - id: fra1-r2
    site: fra1
    kind: HGX-B200
    nvlink_domain_size: 8
nodes:
  - id: gpu-b[01-04]
    site: fra1
    rack: fra1-r1
    model: B200
    accelerator_count: 8
    accelerator_memory_gib: 180
    cpu_cores: 112
    ram_gib: 2048
  - id: gpu-c[01-02]
    site: fra1
    rack: fra1-r2
    model: B200
    accelerator_count: 8
    accelerator_memory_gib: 180
    cpu_cores: 112
    ram_gib: 2048
"""


@pytest_asyncio.fixture
async def events(nats_client: Client, namespace: Namespace) -> AsyncIterator[JobEvents]:
    """Collects every job event."""
    async with job_events(nats_client, namespace) as collected:
        yield collected


async def test_import_submit_fail_preempt_restart(
    nats_url: str,
    namespace: Namespace,
    bus_settings: BusSettings,
    database_url: str,
    nats_client: Client,
    tmp_path: Path,
    events: JobEvents,
) -> None:
    """Across inventory and scheduling: placement, idempotency, requeue after a node failure, preemption, and a restart that loses and doubles nothing."""
    settings = SchedulingSettings(bus=bus_settings, database_url=database_url)
    custody = StaticKeyCustody(allow_unknown=True)
    scheduler = build_service(settings, custody=custody)
    await scheduler.start()
    inventory = ServiceProcess(
        "inventory",
        nats_url=nats_url,
        prefix=namespace.prefix,
        database_url=f"sqlite:///{tmp_path / 'inventory.db'}",
    ).start()
    try:
        await wait_until(
            lambda: PROBES["inventory"](nats_client, namespace), timeout=30, what="inventory"
        )
        summary = await request(
            nats_client,
            ImportFactory(description_yaml=FACTORY, actor="ci"),
            ImportSummary,
            namespace=namespace,
            timeout=30,
        )
        assert summary.nodes_created == 6
        for tenant in ("acme", "globex"):
            await request(
                nats_client,
                SetQuota(tenant=tenant, model="B200", accelerators=48, actor="ci"),
                TenantQuota,
                namespace=namespace,
            )

        async def nodes_seen() -> int:
            return len(scheduler.scheduler.engine.index.nodes)

        await wait_until(nodes_seen, lambda n: n == 6, what="capacity view from inventory events")

        # import -> submit -> placed; the same submission again is the same job
        gang = await request(
            nats_client,
            SubmitJob(job=job_spec("gang", accelerators=16)),
            JobAcceptance,
            namespace=namespace,
        )
        assert gang.state == "placed"
        (placed,) = await events.wait(JobPlaced, gang.job_id)
        again = await request(
            nats_client,
            SubmitJob(job=job_spec("gang", accelerators=16)),
            JobAcceptance,
            namespace=namespace,
        )
        assert (again.job_id, again.created) == (gang.job_id, False)

        # a fatal verdict: inventory fails the node, the gang moves elsewhere
        lost = placed.allocations[0].node_id
        verdicts = EventPublisher(
            nats_client.jetstream(), source="/aifactory/health", namespace=namespace
        )
        await verdicts.publish(
            NewEvent(
                NodeHealthChanged(
                    node_id=lost,
                    site_id="fra1",
                    verdict="failed",
                    reasons=[
                        HealthReason(
                            code="xid_79", message="GPU fell off the bus", component="gpu:3"
                        )
                    ],
                    first_seen=NOW,
                    observed_at=NOW,
                ),
                scope="fra1",
            )
        )
        (requeued,) = await events.wait(JobRequeued, gang.job_id)
        assert requeued.reason == "node_failed"
        await events.wait(JobPlaced, gang.job_id, count=2)
        moved = events.of(JobPlaced, gang.job_id)[-1]
        assert lost not in {a.node_id for a in moved.allocations}

        # a critical job preempts the preemptible gang holding the rest
        low = await request(
            nats_client,
            SubmitJob(
                job=job_spec("low", tenant="globex", accelerators=24, priority="preemptible")
            ),
            JobAcceptance,
            namespace=namespace,
        )
        assert low.state == "placed"
        urgent = await request(
            nats_client,
            SubmitJob(job=job_spec("urgent", priority="critical")),
            JobAcceptance,
            namespace=namespace,
        )
        assert urgent.state == "placed"
        (preempted,) = await events.wait(JobPreempted, low.job_id)
        assert preempted.by_job_id == urgent.job_id
        urgent_node = events.of(JobPlaced, urgent.job_id)[-1].allocations[0].node_id

        # restart mid-flow: a drain and a submission while the scheduler is down
        await scheduler.stop()
        drained = await request(
            nats_client,
            DrainNode(node_id=urgent_node, reason="swap NIC", actor="ci"),
            NodeStateResult,
            namespace=namespace,
        )
        assert drained.state == "draining"
        submitter = EventPublisher(
            nats_client.jetstream(), source="/training-platform", namespace=namespace
        )
        await submitter.publish(NewEvent(JobSubmitted(job=job_spec("while-down")), tenant="acme"))
        scheduler = build_service(settings, custody=custody)
        await scheduler.start()
        (drain_requeue,) = await events.wait(JobRequeued, urgent.job_id)
        assert drain_requeue.reason == "node_drained"
        await events.wait(JobPlaced, urgent.job_id, count=2)
        await events.wait(JobAccepted, job_id_for("acme", "while-down"))

        async def placed_jobs() -> list[Any]:
            page = await request(
                nats_client, ListJobs(state="placed"), JobPage, namespace=namespace
            )
            return page.jobs

        found = await wait_until(
            placed_jobs, lambda jobs: len(jobs) >= 2, what="placed jobs after restart"
        )
        held = Counter(
            (a.node_id, i) for j in found for a in j.allocations for i in a.accelerator_indices
        )
        assert max(held.values()) == 1
        assert not {lost, urgent_node} & {node for node, _ in held}
        accepted = Counter(e.job_id for e in events.of(JobAccepted))
        assert set(accepted.values()) == {1}
        assert len(events.of(JobPlaced, gang.job_id)) == 2
    finally:
        await scheduler.stop()
        code = inventory.stop()
        assert code == 0, inventory.output()[-3000:]
