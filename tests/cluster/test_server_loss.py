"""A NATS server of the three-server cluster dies under load: nothing is lost.

The topology of ``compose.yaml`` on loopback ports: three nats-server processes from
``deploy/nats/nats-{1,2,3}.conf`` as one JetStream cluster (``sync_interval: always``),
inventory and scheduling as their own processes connected to all three servers, every
stream replicated three times. A load generator imports a factory, then submits jobs
both ways other systems do (``job_submitted`` events on JetStream and ``submit_job``
requests) and SIGKILLs one server a third of the way through: the leader of the jobs
stream, the JetStream meta leader, or the server the scheduler is connected to (one
per round). Afterwards every submission JetStream or the scheduler acknowledged is
accepted and placed exactly once, the stream holds each event once, and both services
still answer requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import Error as JetStreamError

from aifactory.bus.connection import Bus
from aifactory.bus.embedded import EmbeddedCluster, EmbeddedNats
from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.contracts.base import Contract
from aifactory.contracts.envelope import Envelope, OutgoingMessage, read_message
from aifactory.contracts.inventory.v1 import GetNode, ImportFactory, ImportSummary, NodeDetails
from aifactory.contracts.jobs.v1 import (
    GetJob,
    JobAcceptance,
    JobAccepted,
    JobPlaced,
    JobRejected,
    JobSpec,
    JobSubmitted,
    JobView,
    SetQuota,
    SubmitJob,
    TenantQuota,
)
from aifactory.store.events import NewEvent
from aifactory.testing.processes import ServiceProcess
from aifactory.testing.waiting import wait_until

pytestmark = pytest.mark.integration

DEPLOY_NATS = Path(__file__).resolve().parents[2] / "deploy" / "nats"
NODES = 24
EVENT_JOBS = 90
REQUEST_JOBS = 30
FACTORY = f"""\
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
nodes:
  - id: gpu-n[01-{NODES:02d}]
    site: fra1
    rack: fra1-r1
    model: B200
    accelerator_count: 8
    accelerator_memory_gib: 180
    cpu_cores: 112
    ram_gib: 2048
"""
# How long anything may take on a loaded 2-core machine (each wait ends as soon as it holds).
PATIENCE_S = 90.0
RETRYABLE = (NatsError, JetStreamError, TimeoutError, ServiceUnavailable)


def job(client_job_id: str) -> JobSpec:
    """A one-accelerator B200 job of tenant acme at fra1."""
    return JobSpec(
        tenant="acme",
        client_job_id=client_job_id,
        name=client_job_id,
        models=["B200"],
        accelerators=1,
        accelerators_per_node=1,
        allowed_sites=["fra1"],
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    """Three clustered nats-servers from deploy/nats on free loopback ports."""
    with EmbeddedCluster(store_root=tmp_path / "nats", config_dir=DEPLOY_NATS) as servers:
        for server in servers.servers:
            jetstream = server.monitor("jsz")
            assert jetstream["config"]["sync_always"], "deploy/nats must fsync every write"
            assert jetstream["meta_cluster"]["cluster_size"] == 3
        yield servers


@pytest.fixture
def services(
    cluster: EmbeddedCluster, namespace: Namespace, tmp_path: Path
) -> Iterator[dict[str, ServiceProcess]]:
    """Inventory and scheduling as processes connected to all three servers."""
    common = {"AIFACTORY_STREAM_REPLICAS": "3", "AIFACTORY_VAR_DIR": str(tmp_path / "var")}
    running = {
        name: ServiceProcess(
            name,
            nats_url=cluster.url,
            prefix=namespace.prefix,
            database_url=f"sqlite:///{tmp_path / f'{name}.db'}",
            env={**common, **extra},
        ).start()
        for name, extra in (
            ("inventory", {}),
            ("scheduling", {"AIFACTORY_SCHEDULING_KEY_CUSTODY": "off"}),
        )
    }
    try:
        yield running
    finally:
        codes = {name: process.stop() for name, process in running.items()}
        for name, process in running.items():  # shown by pytest when the test failed
            print(f"----- {name} (exit {codes[name]}) -----\n{process.output()[-6000:]}")
        for name, code in codes.items():
            assert code == 0, f"{name} exited with {code}:\n{running[name].output()[-4000:]}"


@pytest_asyncio.fixture
async def loadgen(cluster: EmbeddedCluster, namespace: Namespace) -> AsyncIterator[Bus]:
    """The load generator's connection: the bus kit, knowing all three servers."""
    settings = BusSettings(nats_url=cluster.url, subject_prefix=namespace.prefix, stream_replicas=3)
    bus = await Bus(settings, service="loadgen").connect()
    try:
        yield bus
    finally:
        with contextlib.suppress(Exception):
            await bus.close()


async def ask(nc: Client, ns: Namespace, command: Contract, reply: type[Any]) -> Any:
    """A request, retried while no responder or server answers (a server is failing over)."""

    async def attempt() -> Any:
        try:
            return await request(nc, command, reply, namespace=ns, timeout=5)
        except RETRYABLE as exc:
            print(f"{type(command).__name__}: {exc!r}, retrying")
            return None

    return await wait_until(
        attempt, lambda got: got is not None, timeout=PATIENCE_S, interval=0.2,
        what=f"an answer to {type(command).__name__}",
    )  # fmt: skip


async def send(bus: Bus, message: OutgoingMessage) -> None:
    """Publish until JetStream acknowledges; a re-send keeps the event id, so it is deduplicated."""

    async def attempt() -> bool:
        try:
            await bus.publisher.send(message, timeout=5)
        except RETRYABLE:
            return False
        return True

    await wait_until(attempt, timeout=PATIENCE_S, interval=0.2, what="a JetStream ack")


async def stream_events(bus: Bus, stream: str) -> list[Envelope[Any]] | None:
    """Every message in the stream, in order, decoded; None if the read was cut short."""
    js = bus.js
    info = await js.stream_info(bus.namespace.stream(stream))
    last = info.state.last_seq
    subscription = await js.pull_subscribe(
        bus.namespace.subject(">"), stream=bus.namespace.stream(stream)
    )
    events: list[Envelope[Any]] = []
    try:
        seen = 0
        while seen < last:
            try:
                batch = await subscription.fetch(500, timeout=2)
            except NatsTimeoutError:
                return None
            for msg in batch:
                seen = msg.metadata.sequence.stream
                events.append(read_message(msg.headers, msg.data))
                await msg.ack()
    finally:
        await subscription.unsubscribe()
    return events


async def scheduler_knows_the_factory(bus: Bus) -> None:
    """Wait until the scheduler applied every inventory event of the import (site, rack, nodes)."""
    stream, durable = (
        bus.namespace.stream("FACTORY_INVENTORY"),
        bus.namespace.stream("scheduling-inventory"),
    )

    async def applied() -> tuple[int, int]:
        try:
            info = await bus.js.stream_info(stream)
            consumer = await bus.js.consumer_info(stream, durable)
        except RETRYABLE:
            return (0, -1)
        return (info.state.last_seq, consumer.ack_floor.stream_seq if consumer.ack_floor else 0)

    await wait_until(
        applied, lambda seqs: seqs[0] >= NODES + 2 and seqs[1] >= seqs[0], timeout=PATIENCE_S,
        what="the scheduler to apply the imported factory",
    )  # fmt: skip


async def operator_cli_lists_nodes(url: str, ns: Namespace) -> bool:
    """``aifactory nodes`` given the cluster's comma-separated URL list prints the factory."""
    cli = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "aifactory"), "nodes", "--nats-url", url,
        env={**os.environ, "AIFACTORY_SUBJECT_PREFIX": ns.prefix, "NO_COLOR": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(cli.communicate(), timeout=PATIENCE_S)
    text = output.decode()
    assert cli.returncode == 0, text
    assert f"gpu-n{NODES:02d}" in text, text
    return True


def victim_of(kind: str, cluster: EmbeddedCluster, jobs_leader: str) -> EmbeddedNats:
    """The server to kill: the jobs stream leader, the meta leader, or the scheduler's server."""
    by_name = {server.server_name: server for server in cluster.servers}
    if kind == "jobs-stream-leader":
        return by_name[jobs_leader]
    if kind == "meta-leader":
        return by_name[cluster.wait_meta_leader()]
    for server in cluster.servers:
        names = [c.get("name") for c in server.monitor("connz").get("connections", [])]
        if "aifactory-scheduling" in names:
            return server
    raise AssertionError("the scheduler is connected to no server")


# Three rounds, each killing a different kind of server. Each takes 10-35 s on a loaded
# 2-core machine; the timeout only guards against a hang.
@pytest.mark.timeout(300)
@pytest.mark.parametrize("victim", ["jobs-stream-leader", "meta-leader", "scheduler-server"])
async def test_server_killed_under_load_loses_nothing(
    victim: str,
    cluster: EmbeddedCluster,
    services: dict[str, ServiceProcess],
    loadgen: Bus,
    namespace: Namespace,
) -> None:
    """SIGKILL of one of three servers mid-load: every acknowledged job is accepted and placed exactly once, and the services carry on."""
    nc, ns = loadgen.nc, namespace

    async def inventory_answers() -> bool:
        try:
            await request(nc, GetNode(node_id="probe"), NodeDetails, namespace=ns, timeout=2)
        except CommandFailed:
            return True
        except RETRYABLE:
            return False
        return True

    await wait_until(inventory_answers, timeout=PATIENCE_S, what="inventory to answer")
    summary = await ask(nc, ns, ImportFactory(description_yaml=FACTORY, actor="ci"), ImportSummary)
    assert summary.nodes_created == NODES
    await ask(nc, ns, SetQuota(tenant="acme", model="B200", accelerators=8 * NODES, actor="ci"),
              TenantQuota)  # fmt: skip

    await scheduler_knows_the_factory(loadgen)

    jobs_stream = await loadgen.js.stream_info(ns.stream("FACTORY_JOBS"))
    assert jobs_stream.config.num_replicas == 3
    assert jobs_stream.cluster is not None
    assert jobs_stream.cluster.leader

    acknowledged: list[str] = []  # client job ids JetStream or the scheduler acknowledged
    killed: EmbeddedNats | None = None
    for i in range(EVENT_JOBS + REQUEST_JOBS):
        if i == (EVENT_JOBS + REQUEST_JOBS) // 3:
            # victim_of polls the servers' HTTP monitoring (blocking): off the event loop.
            killed = await asyncio.to_thread(victim_of, victim, cluster, jobs_stream.cluster.leader)
            killed.kill()
        client_job_id = f"{victim}-{i:03d}"
        if i % 4 == 3:
            accepted = await ask(nc, ns, SubmitJob(job=job(client_job_id)), JobAcceptance)
            assert accepted.state in ("placed", "queued"), accepted
        else:
            message = loadgen.publisher.build(
                NewEvent(JobSubmitted(job=job(client_job_id)), tenant="acme")
            )
            await send(loadgen, message)
        acknowledged.append(client_job_id)
    assert killed is not None
    assert not killed.running

    # The services carry on: a request after the loss is answered by each of them.
    late = await ask(nc, ns, SubmitJob(job=job(f"{victim}-late")), JobAcceptance)
    acknowledged.append(f"{victim}-late")
    assert (await ask(nc, ns, GetJob(job_id=late.job_id), JobView)).job_id == late.job_id
    await wait_until(
        inventory_answers, timeout=PATIENCE_S, what="inventory to answer after the loss"
    )
    assert await operator_cli_lists_nodes(cluster.url, ns)

    # Nothing lost, nothing doubled: read the replicated stream until every job is placed.
    async def placed_so_far() -> list[Envelope[Any]] | None:
        try:
            return await stream_events(loadgen, "FACTORY_JOBS")
        except RETRYABLE:  # the JetStream API is still failing over
            return None

    def every_job_placed(events: list[Envelope[Any]] | None) -> bool:
        if events is None:
            return False
        placed = {e.data.job_id for e in events if isinstance(e.data, JobPlaced)}
        accepted = {e.data.job_id for e in events if isinstance(e.data, JobAccepted)}
        return len(accepted) >= len(acknowledged) and accepted <= placed

    events = await wait_until(
        placed_so_far, every_job_placed, timeout=PATIENCE_S, interval=1.0,
        what="every acknowledged job accepted and placed",
    )  # fmt: skip
    assert events is not None
    ids = Counter(e.event.id for e in events)
    assert max(ids.values()) == 1, "an event is in the stream twice"
    accepted_by_client = Counter(
        e.data.spec.client_job_id for e in events if isinstance(e.data, JobAccepted)
    )
    assert set(accepted_by_client) == set(acknowledged)
    assert set(accepted_by_client.values()) == {1}
    placed = Counter(e.data.job_id for e in events if isinstance(e.data, JobPlaced))
    assert set(placed.values()) == {1}
    assert not [e for e in events if isinstance(e.data, JobRejected)]
    submitted = Counter(
        e.data.job.client_job_id for e in events if isinstance(e.data, JobSubmitted)
    )
    assert set(submitted) == {c for i, c in enumerate(acknowledged[:-1]) if i % 4 != 3}
    assert set(submitted.values()) == {1}, "a re-sent submission was stored twice"
    held = Counter(
        (a.node_id, index)
        for e in events
        if isinstance(e.data, JobPlaced)
        for a in e.data.allocations
        for index in a.accelerator_indices
    )
    assert max(held.values()) == 1, "an accelerator was given to two jobs"

    # The stream is still replicated on the two survivors, led by one of them.
    after = await loadgen.js.stream_info(ns.stream("FACTORY_JOBS"))
    assert after.cluster is not None
    assert after.cluster.leader not in (None, killed.server_name)
    for name, process in services.items():
        assert process.process is not None
        assert process.process.poll() is None, f"{name} died:\n{process.output()[-4000:]}"
