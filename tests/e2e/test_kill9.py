"""kill -9 of each service in turn, under load, then restart: nothing lost, nothing doubled.

One factory runs for the whole module: every service its own process on its own
SQLite file, two node agents sending telemetry throughout. Each case puts a steady
load on it: jobs submitted through JetStream (acme's name a dataset key, so the
scheduler keeps asking the keys service), a workload side starting and finishing every
placement with deterministic run times, an operator cordoning and uncordoning a node
(inventory), a tenant asking for data keys (keys). One service is killed with SIGKILL
mid-load, left dead while the load goes on, and restarted on the same database.
Afterwards, from the event log replayed from JetStream and from the services' own
answers: every job of the case was accepted once, placed once, never on an
accelerator another job held, finished and billed once; resubmissions created
nothing; the invoice equals the one of the run without a kill; the node's state
changes form one unbroken chain; the keys audit chain verifies and its published copy
matches; no node was falsely judged unhealthy; nothing was dead-lettered. Every service is killed twice (two
rounds, at a different moment of the load), on a factory that already survived the
kills before it: a crash test that passes once proves little.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import nats
import pytest
import pytest_asyncio

from aifactory.bus.settings import Namespace
from aifactory.contracts.health.v1 import ListNodeHealth, NodeHealthChanged, NodeHealthPage
from aifactory.contracts.inventory.v1 import ListNodes, NodePage
from aifactory.contracts.jobs.v1 import JobAcceptance, JobPage, JobView, ListJobs, SubmitJob
from aifactory.contracts.keys.audit_chain import verify_chain
from aifactory.contracts.keys.v1 import (
    AuditPage,
    AuditRecord,
    AuditRecordsAppended,
    CreateKey,
    KeyDescription,
    KeyPolicy,
    ListAuditRecords,
)
from aifactory.testing.waiting import wait_until

from ._billing import BilledRun, accelerator_ms, amount, net_usage, preview, set_up_billing
from ._factory import (
    GPUS_PER_NODE,
    NODES,
    OPERATOR,
    SERVICES,
    SITE,
    TENANTS,
    Factory,
    Timeline,
    job_events,
)
from ._invariants import check_job_log, check_state_chain
from ._workload import EPOCH, DataKeyUser, NodeOperator, Workload, run_window

pytestmark = pytest.mark.integration

JOBS = 24
RATE = 8.0
"""Submissions per second: the load lasts about three seconds."""
KEY = "acme-data"
CHURNED_NODE = "gpu-b02"
AGENT_NODES = ("gpu-a01", "gpu-b01")
KILL_AFTER_PLACEMENTS = {1: 3, 2: 8}
"""Round -> placements seen before the kill (early in the load, then mid-load)."""
DOWN_FOR_SUBMISSIONS = 8
"""Submissions published while the victim is dead (about one second)."""
VICTIMS = ("inventory", "scheduling", "keys", "health", "billing")
CASES = [
    pytest.param(None, 1, id="no-kill"),
    *(
        pytest.param(victim, round_, id=f"{victim}-round{round_}")
        for round_ in (1, 2)
        for victim in VICTIMS
    ),
]
HOURS_PER_CASE = 1000
"""Each case reports its runs in its own stretch of time, so its invoice is its own."""


@pytest_asyncio.fixture(scope="module")
async def factory(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Factory]:
    """The module's factory: onboarded, acme's dataset key created, billing set up, agents on."""
    namespace = Namespace(f"t{uuid.uuid4().hex[:10]}")
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=5)
    running = Factory(
        nc, nats_url=nats_url, namespace=namespace, workdir=tmp_path_factory.mktemp("kill9")
    )
    try:
        await running.start()
        await running.onboard()
        await running.request(
            CreateKey(
                tenant="acme",
                key_id=KEY,
                policy=KeyPolicy(
                    allowed_sites=[SITE], allowed_callers=["tenant:acme", "service:scheduling"]
                ),
                caller=OPERATOR,
            ),
            KeyDescription,
        )
        await set_up_billing(running)
        for node in AGENT_NODES:
            running.start_agent(node)
        yield running
    finally:
        codes = running.stop()
        js = nc.jetstream()
        for info in await js.streams_info():
            if info.config.name and info.config.name.startswith(namespace.stream("")):
                await js.delete_stream(info.config.name)
        await nc.drain()
    assert codes == dict.fromkeys(running.processes, 0), running.logs()


async def _audit_chain(factory: Factory, tenant: str) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    while True:
        page = await factory.request(
            ListAuditRecords(tenant=tenant, caller=OPERATOR, after_seq=len(records), limit=1000),
            AuditPage,
        )
        records += page.records
        if not page.records or len(records) >= page.head_seq:
            return records


async def _published_chain(factory: Factory, tenant: str) -> list[AuditRecord]:
    """The tenant's audit records as published on FACTORY_KEYS, in stream order."""
    return [
        record
        for envelope in await factory.replay("FACTORY_KEYS", "factory.keys.v1.audit.>")
        if isinstance(envelope.data, AuditRecordsAppended)
        for record in envelope.data.records
        if record.chain == tenant
    ]


async def _jobs(factory: Factory, job_ids: set[str]) -> list[JobView]:
    """The scheduler's view of these jobs (every job it holds, filtered)."""
    found: list[JobView] = []
    after: str | None = None
    while True:
        page = await factory.request(ListJobs(limit=1000, after=after), JobPage)
        found += [j for j in page.jobs if j.job_id in job_ids]
        if page.next_after is None:
            return found
        after = page.next_after


@pytest.mark.parametrize(("victim", "round_"), CASES)
async def test_kill9_under_load_loses_and_doubles_nothing(
    victim: str | None, round_: int, factory: Factory, request: pytest.FixtureRequest
) -> None:
    """After a SIGKILL of one service mid-load and its restart, every job is accepted, placed, finished and billed exactly once, the invoice equals the run without a kill, and no service's effects are lost or doubled."""
    case = [c.id for c in CASES].index(request.node.callspec.id)
    first = case * HOURS_PER_CASE
    period = (EPOCH + dt.timedelta(hours=first), EPOCH + dt.timedelta(hours=first + JOBS + 24))
    nc = factory.nc
    namespace = factory.namespace
    stop_load = asyncio.Event()
    timeline = Timeline()
    await factory.ensure_running()
    try:
        async with job_events(nc, namespace) as events:
            workload = Workload(nc, namespace, dataset_key_id=KEY)
            events.listeners.append(workload.on_event)
            operator = NodeOperator(nc, namespace, CHURNED_NODE)
            data_user = DataKeyUser(nc, namespace, "acme", KEY)
            background = [
                asyncio.create_task(operator.run(stop_load)),
                asyncio.create_task(data_user.run(stop_load)),
            ]
            submitting = asyncio.create_task(workload.submit(JOBS, rate=RATE, first=first))

            async def placements() -> int:
                return len(workload.reported)

            await wait_until(
                placements,
                lambda n: n >= KILL_AFTER_PLACEMENTS[round_],
                timeout=60,
                what="load to be under way",
            )
            if victim is not None:
                factory.kill(victim)
            timeline.mark("killed")
            killed_at = first + len(workload.index)

            async def submitted() -> int:
                return first + len(workload.index)

            await wait_until(
                submitted,
                lambda n: n >= min(first + JOBS, killed_at + DOWN_FOR_SUBMISSIONS),
                timeout=60,
                what="submissions while the victim is dead",
            )
            restarted_at = dt.datetime.now(dt.UTC)
            if victim is not None:
                await factory.restart(victim)
            timeline.mark("restarted")
            await submitting
            # the same submissions again: an event before the kill, one while it was dead,
            # and a command
            await workload.resubmit(first)
            await workload.resubmit(min(killed_at, first + JOBS - 1))
            again = await factory.request(
                SubmitJob(job=workload.spec(first + 1)), JobAcceptance, timeout=15
            )
            assert not again.created

            async def finished() -> int:
                return workload.finished

            await wait_until(
                finished, lambda n: n == JOBS, timeout=120, what=f"all {JOBS} jobs finished"
            )
            timeline.mark("all reported finished")
            stop_load.set()
            await asyncio.gather(*background)
            await workload.close()
            assert operator.commands > 0
            assert data_user.answered > 0
            for stream, durable in (
                ("FACTORY_JOBS", "scheduling-submissions"),
                ("FACTORY_JOBS", "scheduling-reports"),
                ("FACTORY_INVENTORY", "scheduling-inventory"),
                ("FACTORY_JOBS", "billing-jobs"),
            ):
                await factory.wait_consumed(stream, durable, timeout=90)
            timeline.mark("consumers caught up")

        # jobs: accepted, placed and finished exactly once; no accelerator ever held twice
        mine = set(workload.index)
        report = check_job_log(await factory.replay("FACTORY_JOBS"))
        assert not report.problems, report.problems
        assert mine <= set(report.accepted), "a submitted job was lost"
        placed = {j: attempts for j, attempts in report.placements.items() if j in mine}
        assert placed == {j: [1] for j in mine}, "a job was placed more than once"
        assert mine <= report.finished
        jobs = await _jobs(factory, mine)
        assert sorted(j.job_id for j in jobs) == sorted(mine)
        assert {j.state for j in jobs} == {"finished"}
        accepted_twice = [j for j, n in report.accepted.items() if n > 1]
        assert accepted_twice == [], "a resubmission created a job again"

        # billing: one metered run per job, as reported; the invoice equals the run without a kill
        expected_runs = sorted(
            BilledRun(job_id, 1, GPUS_PER_NODE, *run_window(index), node_failure=False)
            for job_id, index in workload.index.items()
        )

        async def billed_runs() -> list[BilledRun]:
            log = await factory.replay("FACTORY_BILLING")
            return sorted(r for r in net_usage(log) if r.job_id in mine)

        # the ledger is published through billing's outbox, a moment after each commit: a
        # correction (reversal + record) may still be on its way
        await wait_until(
            billed_runs,
            lambda runs: runs == expected_runs,
            timeout=60,
            what="the published ledger to hold exactly one run per job, as reported",
        )
        for tenant in TENANTS:
            runs = [i for j, i in workload.index.items() if workload.specs[j].tenant == tenant]
            expected = amount(sum(accelerator_ms(GPUS_PER_NODE, *run_window(i)) for i in runs))
            invoice = await preview(factory, tenant, *period)
            assert (invoice.subtotal, invoice.credits, invoice.total) == (
                expected,
                Decimal(0),
                expected,
            ), f"{tenant}'s invoice differs from the run without a kill: {invoice}"

        # inventory: the churned node's changes form one chain, and it ends available
        inventory_log = await factory.replay("FACTORY_INVENTORY")
        assert not check_state_chain(inventory_log, CHURNED_NODE)
        nodes = await factory.request(ListNodes(site_id=SITE), NodePage)
        assert {n.node_id: n.state for n in nodes.nodes} == dict.fromkeys(NODES, "available")

        # keys: the audit chain verifies, holds every answered request, and its copy matches
        chain = await _audit_chain(factory, "acme")
        assert not verify_chain(chain), verify_chain(chain)
        issued = [r for r in chain if r.operation == "generate_data_key"]
        assert len(issued) >= data_user.answered
        published = await wait_until(
            lambda: _published_chain(factory, "acme"),
            lambda copy: len(copy) >= len(chain),
            timeout=30,
            what="the audit chain's published copy",
        )
        assert [r.record_hash for r in published[: len(chain)]] == [r.record_hash for r in chain]

        # health: no false alarm, and ingest goes on after the case (and the restart)
        verdicts = [
            e.data
            for e in await factory.replay("FACTORY_HEALTH")
            if isinstance(e.data, NodeHealthChanged)
        ]
        assert [v for v in verdicts if v.verdict != "healthy"] == []
        page = await wait_until(
            lambda: factory.request(ListNodeHealth(), NodeHealthPage),
            lambda p: all(
                n.last_heartbeat_at is not None and n.last_heartbeat_at > restarted_at
                for n in p.nodes
                if n.node_id in AGENT_NODES
            ),
            timeout=60,
            what="heartbeats ingested after the restart",
        )
        assert {n.node_id: n.verdict for n in page.nodes if n.node_id in AGENT_NODES} == (
            dict.fromkeys(AGENT_NODES, "healthy")
        )
        # nothing legitimate was dead-lettered because of a crash
        dead = [
            f"{d.data.consumer}: {d.data.error_class}: {d.data.error_message}"
            for d in await factory.replay("FACTORY_DLQ")
        ]
        assert dead == [], dead
        timeline.mark("checked")
    except BaseException:
        print(factory.logs())
        raise
    finally:
        stop_load.set()
        print(f"timeline ({victim} round {round_}): {timeline}")


def test_every_service_is_killed_in_two_rounds() -> None:
    """The kill -9 cases name every service the factory runs, each in two rounds."""
    victims = [str(c.values[0]) for c in CASES if c.values[0] is not None]
    assert sorted(victims) == sorted(SERVICES * 2)
