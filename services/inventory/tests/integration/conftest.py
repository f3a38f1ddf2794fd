"""Fixtures for inventory integration tests: the service running in-process on real NATS."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio
from nats.aio.client import Client

from aifactory.bus.service import Service
from aifactory.bus.settings import BusSettings
from aifactory.contracts.envelope import Envelope, read_message
from aifactory.inventory.app import build_service
from aifactory.inventory.config import InventorySettings
from aifactory.testing.waiting import wait_until

InventoryFactory = Callable[..., Awaitable[Service]]


@pytest_asyncio.fixture
async def start_inventory(
    bus_settings: BusSettings, database_url: str, nats_client: Client
) -> AsyncIterator[InventoryFactory]:
    """``await start_inventory(**settings)`` starts an inventory service; all are stopped after."""
    started: list[Service] = []

    async def start(**overrides: object) -> Service:
        settings = dataclasses.replace(
            InventorySettings(bus=bus_settings, database_url=database_url), **overrides
        )
        service = build_service(settings)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


@pytest_asyncio.fixture
async def inventory(start_inventory: InventoryFactory) -> Service:
    """One inventory service, started."""
    return await start_inventory()


class StreamReader:
    """Reads the inventory stream of a test namespace."""

    def __init__(self, nc: Client, stream: str) -> None:
        self.nc = nc
        self.stream = stream

    async def count(self) -> int:
        """Messages in the stream now."""
        return (await self.nc.jetstream().stream_info(self.stream)).state.messages

    async def wait_count(self, count: int) -> int:
        """Wait until the stream holds at least ``count`` messages; return how many it holds."""
        return await wait_until(
            self.count, lambda n: n >= count, what=f"{count} events in {self.stream}"
        )

    async def message(self, seq: int) -> tuple[dict[str, str], Envelope]:  # type: ignore[type-arg]
        """Headers and decoded envelope of the message at ``seq``."""
        raw = await self.nc.jetstream().get_msg(self.stream, seq)
        headers = dict(raw.headers or {})
        return headers, read_message(headers, raw.data)

    async def types(self, first: int, last: int) -> list[str]:
        """The ce-types of messages first..last."""
        return [(await self.message(seq))[1].event.type for seq in range(first, last + 1)]


@pytest_asyncio.fixture
async def inventory_stream(inventory: Service, nats_client: Client) -> StreamReader:
    """The FACTORY_INVENTORY stream of this test's namespace."""
    return StreamReader(nats_client, inventory.bus.namespace.stream("FACTORY_INVENTORY"))
