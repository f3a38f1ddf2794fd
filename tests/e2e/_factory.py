"""A whole factory for end-to-end tests: every service its own process, one NATS namespace.

``Factory`` starts the services (``python -m aifactory.<service>``, each with its own
SQLite file under the test's ``tmp_path`` unless given another database), waits until
each answers a query, and can ``kill`` (SIGKILL) and ``restart`` any of them, and start
simulated node agents. ``onboard`` imports the test factory into inventory, gives the
tenants quotas and waits until the scheduler has consumed every inventory event.
``replay`` reads a stream from its first message (the way an integrator replays
history) and ``caught_up`` tells whether a durable consumer has applied everything its
stream holds. ``JobEvents`` collects the job events live; ``Timeline`` records when a
test's phases ended, for its output.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.contracts.base import Contract
from aifactory.contracts.billing.v1 import AccountList, ListAccounts
from aifactory.contracts.catalog import load_all
from aifactory.contracts.envelope import Envelope, read_message
from aifactory.contracts.health.v1 import ListNodeHealth, NodeHealthPage
from aifactory.contracts.inventory.v1 import GetNode, ImportFactory, ImportSummary, NodeDetails
from aifactory.contracts.jobs.v1 import JobPage, JobSpec, ListJobs, SetQuota, TenantQuota
from aifactory.contracts.keys.v1 import Caller, KeyList, ListKeys
from aifactory.testing.processes import ServiceProcess
from aifactory.testing.waiting import wait_until

load_all()
T = TypeVar("T")

SITE = "fra1"
NODES = ("gpu-a01", "gpu-a02", "gpu-b01", "gpu-b02")
GPUS_PER_NODE = 8
TENANTS = ("acme", "globex")
FACTORY_YAML = """\
version: 1
sites:
  - id: fra1
    name: Frankfurt 1
    region: eu-central
    jurisdiction: EU/DE
racks:
  - id: fra1-ra
    site: fra1
    kind: HGX-B200
    nvlink_domain_size: 8
  - id: fra1-rb
    site: fra1
    kind: HGX-B200
    nvlink_domain_size: 8
nodes:
  - id: gpu-a[01-02]
    site: fra1
    rack: fra1-ra
    model: B200
    accelerator_count: 8
    accelerator_memory_gib: 180
    cpu_cores: 112
    ram_gib: 2048
  - id: gpu-b[01-02]
    site: fra1
    rack: fra1-rb
    model: B200
    accelerator_count: 8
    accelerator_memory_gib: 180
    cpu_cores: 112
    ram_gib: 2048
"""
INVENTORY_EVENTS_OF_IMPORT = 1 + 2 + len(NODES)
"""Site, racks and nodes registered by importing ``FACTORY_YAML``."""
OPERATOR = Caller(principal="operator:e2e", site="local")

SERVICES = ("inventory", "scheduling", "health", "keys", "billing")
"""The services every end-to-end factory runs."""

SERVICE_ENV: Mapping[str, Mapping[str, str]] = {
    "scheduling": {
        # ask the keys service every second, retry waiting jobs twice a second: a key
        # service outage is felt at once, and its end too
        "AIFACTORY_SCHEDULING_KEY_CACHE_S": "1",
        "AIFACTORY_SCHEDULING_KEY_RECHECK_S": "0.5",
    },
    "health": {
        # nodes without an agent are not judged during a test (10 x 1 h of silence);
        # nodes with one after 10 of the agent's intervals: a loaded CI machine may
        # delay an agent's heartbeat by seconds, which must not fail its node
        "AIFACTORY_HEALTH_DEFAULT_INTERVAL": "3600",
        "AIFACTORY_HEALTH_MISSED_INTERVALS": "10",
        "AIFACTORY_HEALTH_TICK": "0.1",
    },
    "keys": {"AIFACTORY_KEYS_MAX_BATCH": "64"},
    # small batches, so a kill lands between transactions
    "billing": {"AIFACTORY_BILLING_BATCH_SIZE": "32"},
}


def job_spec(
    client_job_id: str,
    *,
    tenant: str = "acme",
    accelerators: int = GPUS_PER_NODE,
    priority: str = "standard",
    dataset_key_id: str | None = None,
) -> JobSpec:
    """A B200 job at fra1 taking whole nodes."""
    return JobSpec(
        tenant=tenant,
        client_job_id=client_job_id,
        name=client_job_id,
        models=["B200"],
        accelerators=accelerators,
        accelerators_per_node=GPUS_PER_NODE,
        priority=priority,  # type: ignore[arg-type]
        allowed_sites=[SITE],
        dataset_key_id=dataset_key_id,
    )


async def _answers(probe: Awaitable[Any]) -> bool:
    try:
        await probe
    except ServiceUnavailable:
        return False
    except CommandFailed:
        return True  # it answered, with an error: it is up
    return True


PROBES: dict[str, Callable[[Client, Namespace], Awaitable[bool]]] = {
    "inventory": lambda nc, ns: _answers(
        request(nc, GetNode(node_id="probe"), NodeDetails, namespace=ns, timeout=1)
    ),
    "scheduling": lambda nc, ns: _answers(
        request(nc, ListJobs(limit=1), JobPage, namespace=ns, timeout=1)
    ),
    "health": lambda nc, ns: _answers(
        request(nc, ListNodeHealth(limit=1), NodeHealthPage, namespace=ns, timeout=1)
    ),
    "keys": lambda nc, ns: _answers(
        request(nc, ListKeys(tenant="probe", caller=OPERATOR), KeyList, namespace=ns, timeout=1)
    ),
    "billing": lambda nc, ns: _answers(
        request(nc, ListAccounts(), AccountList, namespace=ns, timeout=1)
    ),
}
"""A query each service answers once it is up (an error reply counts as an answer)."""


def write_master_key(path: Path) -> Path:
    """A fresh 256-bit master key for the keys service, base64, mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


class Factory:
    """The services of one test, each its own process, sharing the test's NATS namespace."""

    def __init__(
        self,
        nc: Client,
        *,
        nats_url: str,
        namespace: Namespace,
        workdir: Path,
        services: Iterable[str] = SERVICES,
        databases: Mapping[str, str] | None = None,
    ) -> None:
        self.nc = nc
        self.namespace = namespace
        self.workdir = workdir
        self.processes: dict[str, ServiceProcess] = {}
        for service in services:
            env = dict(SERVICE_ENV.get(service, {}))
            if service == "keys":
                env["AIFACTORY_KEYS_MASTER_KEY_FILE"] = str(
                    write_master_key(workdir / "master.key")
                )
            self.processes[service] = ServiceProcess(
                service,
                nats_url=nats_url,
                prefix=namespace.prefix,
                database_url=(databases or {}).get(
                    service, f"sqlite:///{workdir / f'{service}.db'}"
                ),
                env=env,
            )
        self.agents: list[ServiceProcess] = []
        self._nats_url = nats_url

    # ------------------------------------------------------------------ processes
    async def start(self) -> None:
        """Start every service and wait until each answers."""
        for process in self.processes.values():
            process.start()
        for service in self.processes:
            await self.wait_ready(service)

    async def wait_ready(self, service: str, timeout: float = 90.0) -> None:
        """Wait until ``service`` answers its probe query."""
        process = self.processes[service]

        async def probe() -> bool:
            if not process.alive:
                raise AssertionError(f"{service} exited:\n{process.tail()}")
            return await PROBES[service](self.nc, self.namespace)

        await wait_until(probe, timeout=timeout, interval=0.2, what=f"{service} to answer")

    async def ensure_running(self) -> None:
        """Restart any service that is not running (a test before may have failed mid-kill)."""
        for service, process in self.processes.items():
            if not process.alive:
                await self.restart(service)

    def kill(self, service: str) -> None:
        """``kill -9`` one service."""
        code = self.processes[service].kill()
        assert code == -9, f"{service} was not running when killed (exit {code})"

    async def restart(self, service: str) -> None:
        """Start a killed or stopped service again on its database; wait until it answers."""
        self.processes[service].start()
        await self.wait_ready(service)

    def start_agent(self, node_id: str, *, profile: str = "healthy", interval: str = "1s") -> None:
        """A simulated node agent for ``node_id`` (``profile`` e.g. ``xid:79``)."""
        agent = ServiceProcess(
            "agent",
            nats_url=self._nats_url,
            prefix=self.namespace.prefix,
            database_url=None,
            env={"AIFACTORY_LOG_LEVEL": "WARNING"},
            args=["--node", node_id, "--interval", interval, "--simulate", profile],
        )
        self.agents.append(agent.start())

    def stop(self) -> dict[str, int | None]:
        """Stop agents, then services (SIGTERM); the services' exit codes."""
        for agent in self.agents:
            if agent.alive:
                agent.kill()
        return {name: process.stop() for name, process in self.processes.items()}

    def logs(self, lines: int = 30) -> str:
        """The last lines of every service's output, for assertion messages."""
        return "\n".join(
            f"=== {name}\n{process.tail(lines)}" for name, process in self.processes.items()
        )

    # ------------------------------------------------------------------ setup
    async def onboard(self, *, quota: int = len(NODES) * GPUS_PER_NODE) -> None:
        """Import the factory, give each tenant a B200 quota, wait for the scheduler's view."""
        summary = await self.request(
            ImportFactory(description_yaml=FACTORY_YAML, actor="e2e"), ImportSummary, timeout=30
        )
        assert summary.nodes_created == len(NODES)
        for tenant in TENANTS:
            await self.request(
                SetQuota(tenant=tenant, model="B200", accelerators=quota, actor="e2e"),
                TenantQuota,
            )
        await self.wait_consumed(
            "FACTORY_INVENTORY", "scheduling-inventory", INVENTORY_EVENTS_OF_IMPORT
        )

    async def request(self, command: Contract, reply: type[T], *, timeout: float = 10.0) -> T:
        """A command or query in the test's namespace."""
        return await request(self.nc, command, reply, namespace=self.namespace, timeout=timeout)  # type: ignore[type-var]

    # ------------------------------------------------------------------ streams
    async def caught_up(self, stream: str, durable: str, at_least: int = 0) -> bool:
        """Whether ``durable`` has applied (acknowledged) all of ``stream``, holding ``at_least``."""
        js = self.nc.jetstream()
        info = await js.stream_info(self.namespace.stream(stream))
        if info.state.messages < at_least:
            return False
        consumer = await js.consumer_info(
            self.namespace.stream(stream), self.namespace.stream(durable)
        )
        return bool(consumer.num_pending == 0 and consumer.num_ack_pending == 0)

    async def wait_consumed(
        self, stream: str, durable: str, at_least: int = 0, timeout: float = 60.0
    ) -> None:
        """Wait until ``durable`` has applied everything ``stream`` holds."""
        await wait_until(
            lambda: self.caught_up(stream, durable, at_least),
            timeout=timeout,
            interval=0.1,
            what=f"{durable} to apply all of {stream}",
        )

    async def replay(self, stream: str, subjects: str = ">") -> list[Envelope[Any]]:
        """Every message of ``stream`` (matching ``subjects``), decoded, in stream order."""
        return await replay(self.nc, self.namespace, stream, subjects)


async def replay(
    nc: Client, namespace: Namespace, stream: str, subjects: str = ">"
) -> list[Envelope[Any]]:
    """Read a stream from its first message with an ephemeral pull consumer (no acks)."""
    js = nc.jetstream()
    name = namespace.stream(stream)
    info = await js.stream_info(name)
    last = info.state.last_seq
    if info.state.messages == 0:
        return []
    sub = await js.pull_subscribe(
        namespace.subject(subjects),
        stream=name,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
    )
    seen: list[Envelope[Any]] = []
    try:
        while True:
            try:
                batch: list[Msg] = await sub.fetch(512, timeout=2)
            except NatsTimeoutError:
                break
            seen.extend(read_message(msg.headers, msg.data) for msg in batch)
            if batch[-1].metadata.sequence.stream >= last:
                break
    finally:
        await sub.unsubscribe()
    return seen


class Timeline:
    """When each phase of a test ended (printed with the test's output; never asserted)."""

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.marks: list[tuple[str, float]] = []

    def mark(self, phase: str) -> None:
        """``phase`` just ended."""
        self.marks.append((phase, time.monotonic() - self.began))

    def __str__(self) -> str:
        return " | ".join(f"{phase} {at:.1f}s" for phase, at in self.marks)


class JobEvents:
    """Job events of the test's namespace as they arrive (core subscription, may repeat)."""

    def __init__(self) -> None:
        self.seen: list[Envelope[Any]] = []
        self.listeners: list[Callable[[Envelope[Any]], None]] = []

    async def on_message(self, msg: Msg) -> None:
        """Decode and record one message; tell the listeners."""
        envelope = read_message(msg.headers, msg.data)
        self.seen.append(envelope)
        for listener in self.listeners:
            listener(envelope)

    def of(self, kind: type[T], job_id: str | None = None) -> list[T]:
        """The payloads of one type (of one job)."""
        return [
            e.data
            for e in self.seen
            if isinstance(e.data, kind) and job_id in (None, getattr(e.data, "job_id", None))
        ]

    async def wait(
        self, kind: type[T], job_id: str | None = None, count: int = 1, timeout: float = 60
    ) -> list[T]:
        """Wait until ``count`` events of ``kind`` (of one job) arrived."""

        async def probe() -> list[T]:
            return self.of(kind, job_id)

        return await wait_until(
            probe, lambda got: len(got) >= count, timeout=timeout, what=f"{count} {kind.__name__}"
        )


@asynccontextmanager
async def job_events(nc: Client, namespace: Namespace) -> AsyncIterator[JobEvents]:
    """Collect every job event of the namespace while the block runs."""
    collected = JobEvents()
    sub = await nc.subscribe(namespace.subject("factory.jobs.v1.evt.>"), cb=collected.on_message)
    try:
        yield collected
    finally:
        await sub.unsubscribe()
