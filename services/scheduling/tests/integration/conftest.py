"""Fixtures for scheduling integration tests: the service in-process on real NATS.

``scheduling`` starts the service (SQLite and PostgreSQL through ``database_url``)
with a key-custody test double; ``feed`` publishes inventory / key / job events the
way those services do; ``job_events`` collects every job event of the test's
namespace so a test waits for "job X was placed" instead of sleeping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg

from aifactory.bus.publisher import EventPublisher
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.contracts.envelope import Envelope, read_message
from aifactory.contracts.jobs.v1 import JobPlaced
from aifactory.scheduling.app import SchedulingService, build_service
from aifactory.scheduling.config import SchedulingSettings
from aifactory.scheduling.custody import StaticKeyCustody
from aifactory.store.events import NewEvent
from aifactory.testing.waiting import wait_until

SchedulerFactory = Callable[..., Awaitable[SchedulingService]]


@pytest_asyncio.fixture
async def custody() -> StaticKeyCustody:
    """The key-custody test double (unknown keys usable everywhere unless a test says otherwise)."""
    return StaticKeyCustody(allow_unknown=True)


@pytest_asyncio.fixture
async def start_scheduling(
    bus_settings: BusSettings, database_url: str, nats_client: Client, custody: StaticKeyCustody
) -> AsyncIterator[SchedulerFactory]:
    """``await start_scheduling(**settings)`` starts a scheduling service; all stopped after."""
    started: list[SchedulingService] = []

    async def start(**overrides: Any) -> SchedulingService:
        settings = dataclasses.replace(
            SchedulingSettings(bus=bus_settings, database_url=database_url, key_recheck_s=0.2),
            **overrides,
        )
        service = build_service(settings, custody=custody)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


@pytest_asyncio.fixture
async def scheduling(start_scheduling: SchedulerFactory) -> SchedulingService:
    """One scheduling service, started."""
    return await start_scheduling()


class Feed:
    """Publishes events into the test's namespace as other services would."""

    def __init__(self, nc: Client, namespace: Namespace) -> None:
        self.publisher = EventPublisher(nc.jetstream(), source="/test/feed", namespace=namespace)

    async def send(self, events: Iterable[NewEvent]) -> None:
        """Publish and wait for JetStream's acks."""
        await self.publisher.publish_many(list(events))


@pytest_asyncio.fixture
async def feed(nats_client: Client, namespace: Namespace) -> Feed:
    """A publisher of inventory, key and job events."""
    return Feed(nats_client, namespace)


class JobEvents:
    """Every job event of the namespace, decoded, in arrival order."""

    def __init__(self) -> None:
        self.seen: list[Envelope[Any]] = []

    def add(self, msg: Msg) -> None:
        self.seen.append(read_message(msg.headers, msg.data))

    def of(self, kind: type[Any], job_id: str | None = None) -> list[Any]:
        """Payloads of one event type (for one job)."""
        return [
            e.data
            for e in self.seen
            if isinstance(e.data, kind) and (job_id is None or e.data.job_id == job_id)
        ]

    async def wait(
        self, kind: type[Any], job_id: str | None = None, count: int = 1, timeout: float = 15
    ) -> list[Any]:
        """Wait until ``count`` events of ``kind`` (for ``job_id``) arrived; return them."""

        async def probe() -> list[Any]:
            return self.of(kind, job_id)

        return await wait_until(
            probe,
            lambda got: len(got) >= count,
            timeout=timeout,
            what=f"{count} {kind.__name__} {job_id or ''}",
        )

    def nodes_of(self, job_id: str) -> list[str]:
        """The nodes of the last placement of a job."""
        return [a.node_id for a in self.of(JobPlaced, job_id)[-1].allocations]


@pytest_asyncio.fixture
async def job_events(nats_client: Client, namespace: Namespace) -> AsyncIterator[JobEvents]:
    """Collects ``factory.jobs.v1.evt.>`` of this test."""
    collected = JobEvents()

    async def on_message(msg: Msg) -> None:
        collected.add(msg)

    sub = await nats_client.subscribe(namespace.subject("factory.jobs.v1.evt.>"), cb=on_message)
    yield collected
    await sub.unsubscribe()
