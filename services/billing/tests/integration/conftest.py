"""Fixtures for billing integration tests: the service in-process over real NATS and a database.

``start_billing`` starts a billing service (real nats-server; SQLite or PostgreSQL by
the ``database_url`` fixture); ``publish`` sends pre-built messages to JetStream as the
scheduler, inventory and health would; ``ask`` sends a command or query and returns
the typed reply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import pytest_asyncio
from nats.aio.client import Client
from nats.js.api import PubAck

from aifactory.billing.app import build_service
from aifactory.billing.config import BillingSettings
from aifactory.bus.connection import Bus
from aifactory.bus.rpc import request
from aifactory.bus.service import Service
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.contracts.base import Contract
from aifactory.contracts.envelope import OutgoingMessage
from aifactory.contracts.registry import spec_of

from ..scenario import Script

R = TypeVar("R", bound=Contract)
BillingFactory = Callable[..., Awaitable[Service]]


@pytest_asyncio.fixture
async def start_billing(
    bus_settings: BusSettings, database_url: str, nats_client: Client
) -> AsyncIterator[BillingFactory]:
    """``await start_billing(**overrides)`` starts a billing service; all are stopped after."""
    started: list[Service] = []

    async def start(**overrides: Any) -> Service:
        settings = dataclasses.replace(
            BillingSettings(bus=bus_settings, database_url=database_url), **overrides
        )
        service = build_service(settings)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


@dataclasses.dataclass
class Producer:
    """Publishes messages into the test namespace's streams, as the other services do."""

    bus: Bus

    def build(self, script: Script) -> list[OutgoingMessage]:
        """The script's messages with their fixed ids and CloudEvents times."""
        return [
            self.bus.publisher.build(event, event_id=event_id, time=when)
            for event, event_id, when in script.events
        ]

    async def send(self, messages: Iterable[OutgoingMessage]) -> list[PubAck]:
        """Publish each message (in order) and wait for every JetStream ack."""
        return [await self.bus.publisher.send(message) for message in messages]


@pytest_asyncio.fixture
async def producer(bus_settings: BusSettings, nats_client: Client) -> AsyncIterator[Producer]:
    """A producer connected to the test NATS, streams provisioned."""
    bus = await Bus(bus_settings, service="producer").connect()
    await bus.provision()
    yield Producer(bus)
    await bus.close()


@pytest_asyncio.fixture
async def ask(
    nats_client: Client, namespace: Namespace
) -> Callable[[Contract, type[R]], Awaitable[R]]:
    """``await ask(command, ReplyType)``: a request to the billing service."""

    async def send(command: Contract, reply_type: type[R]) -> R:
        assert spec_of(command).reply is reply_type
        return await request(nats_client, command, reply_type, namespace=namespace, timeout=30)

    return send
