"""Fixtures for health integration tests: the service in-process, agents as processes.

``start_health`` starts a health service (real NATS, SQLite or PostgreSQL) with fast
rules; ``register_nodes`` publishes inventory ``NodeRegistered`` events on the test
namespace's FACTORY_INVENTORY stream, as inventory would; ``spawn_agent`` runs
``python -m aifactory.agent --simulate ...`` as a separate process (killed after the
test); ``verdicts`` collects the ``NodeHealthChanged`` events of the namespace.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio
from nats.aio.client import Client

from aifactory.bus.connection import Bus
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.contracts.envelope import read_message
from aifactory.contracts.health.v1 import NodeHealthChanged
from aifactory.contracts.inventory.v1 import Node, NodeRegistered
from aifactory.contracts.registry import spec_of
from aifactory.health.app import HealthService, build_service
from aifactory.health.config import HealthSettings
from aifactory.health.rules import RuleSettings
from aifactory.store.events import NewEvent
from aifactory.testing.collector import CollectedEvents, collect_events

TEST_RULES = RuleSettings(
    missed_intervals=3,
    default_interval_s=3.0,
    recovery_dwell_s=1.0,
    flap_threshold=3,
    flap_window_s=60.0,
)
AGENT_INTERVAL = "200ms"
HealthFactory = Callable[..., Awaitable[HealthService]]


def node_record(
    node_id: str, rack_id: str = "fra1-r01", gpus: int = 8, state: str = "available"
) -> Node:
    """An inventory node record as NodeRegistered carries it."""
    now = dt.datetime.now(dt.UTC)
    return Node(
        node_id=node_id,
        site_id="fra1",
        rack_id=rack_id,
        model="B200",
        accelerator_count=gpus,
        accelerator_memory_gib=180,
        cpu_cores=112,
        ram_gib=2048,
        state=state,  # type: ignore[arg-type]
        state_changed_at=now,
        registered_at=now,
        updated_at=now,
    )


@pytest_asyncio.fixture
async def start_health(
    bus_settings: BusSettings, database_url: str, nats_client: Client
) -> AsyncIterator[HealthFactory]:
    """``await start_health(**overrides)`` starts a health service; all are stopped after."""
    started: list[HealthService] = []

    async def start(**overrides: object) -> HealthService:
        settings = dataclasses.replace(
            HealthSettings(
                bus=bus_settings, database_url=database_url, tick_s=0.1, rules=TEST_RULES
            ),
            **overrides,
        )
        service = build_service(settings)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


@pytest_asyncio.fixture
async def register_nodes(
    bus_settings: BusSettings, nats_client: Client
) -> AsyncIterator[Callable[..., Awaitable[None]]]:
    """``await register_nodes(node, ...)`` publishes NodeRegistered events like inventory."""
    bus = await Bus(bus_settings, service="inventory").connect()
    await bus.provision()

    async def register(*nodes: Node) -> None:
        for node in nodes:
            await bus.publisher.publish(
                NewEvent(NodeRegistered(node=node, actor="test"), scope=node.site_id)
            )

    yield register
    await bus.close()


@pytest_asyncio.fixture
async def verdicts(nats_client: Client, namespace: Namespace) -> AsyncIterator[CollectedEvents]:
    """Every NodeHealthChanged published in this test's namespace."""
    subject = namespace.subject(spec_of(NodeHealthChanged).subject_filter)
    async with collect_events(nats_client, subject) as collected:
        yield collected


def decoded(collected: CollectedEvents) -> list[NodeHealthChanged]:
    """The collected NodeHealthChanged events, once each.

    A core subscription also sees an outbox relay's re-publication after a restart
    (JetStream drops it from the stream by ``Nats-Msg-Id``; consumers by ``ce-id``).
    """
    seen: set[str] = set()
    events = []
    for msg in collected.messages:
        envelope = read_message(msg.headers, msg.data)
        if envelope.event.id not in seen:
            seen.add(envelope.event.id)
            events.append(envelope.data)
    return events  # type: ignore[return-value]


@dataclasses.dataclass
class AgentProcess:
    """A running ``python -m aifactory.agent``."""

    node_id: str
    process: subprocess.Popen[bytes]

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            return self.process.wait(timeout=15)
        return self.process.returncode


@pytest.fixture
def spawn_agent(nats_url: str, namespace: Namespace) -> Iterator[Callable[..., AgentProcess]]:
    """``spawn_agent(node_id, profile, *extra)`` starts an agent process; all are stopped after."""
    running: list[AgentProcess] = []
    env = {
        **os.environ,
        "AIFACTORY_NATS_URL": nats_url,
        "AIFACTORY_SUBJECT_PREFIX": namespace.prefix,
        "AIFACTORY_LOG_FORMAT": "json",
        "AIFACTORY_LOG_LEVEL": "WARNING",
    }

    def spawn(node_id: str, profile: str = "healthy", *extra: str) -> AgentProcess:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aifactory.agent",
                "--node",
                node_id,
                "--interval",
                AGENT_INTERVAL,
                "--simulate",
                profile,
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        agent = AgentProcess(node_id, process)
        running.append(agent)
        return agent

    yield spawn
    for agent in running:
        if agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait(timeout=10)


def verdict_of(service: HealthService, node_id: str) -> str | None:
    """The monitor's published verdict of ``node_id`` (None when not expected)."""
    node = service.monitor.nodes.get(node_id)
    return node.verdict if node is not None else None


def heard_from(service: HealthService, node_id: str) -> bool:
    """Whether the service has received telemetry from ``node_id``."""
    node = service.monitor.nodes.get(node_id)
    return node is not None and node.last_seen is not None
