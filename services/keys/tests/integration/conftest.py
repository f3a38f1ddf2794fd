"""Fixtures for the keys integration tests: the service running in-process on real NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import pytest_asyncio
from nats.aio.client import Client

from aifactory.bus.rpc import request
from aifactory.bus.settings import BusSettings
from aifactory.contracts.base import Contract
from aifactory.keys.app import KeysService, build_service
from aifactory.keys.config import KeysSettings
from aifactory.keys.crypto import MasterKeyRoot

R = TypeVar("R", bound=Contract)


@pytest.fixture
def keys_settings(bus_settings: BusSettings, database_url: str) -> KeysSettings:
    """Settings for a test keys service: the test namespace and database, no destruction wait."""
    return KeysSettings(
        bus=bus_settings,
        database_url=database_url,
        master_key_file=Path("/nonexistent/master.key"),
        site="fra-1",
        min_destruction_wait_s=0,
        maintenance_interval_s=3600,
    )


@pytest_asyncio.fixture
async def keys_service(
    keys_settings: KeysSettings, root: MasterKeyRoot, nats_client: Client
) -> AsyncIterator[KeysService]:
    """The keys service started in-process (stopped afterwards)."""
    service = build_service(keys_settings, root)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
def call(nats_client: Client, bus_settings: BusSettings) -> Callable[..., object]:
    """``await call(command, ReplyType)`` sends a keys request in the test namespace."""

    async def send(command: Contract, reply: type[R]) -> R:
        return await request(nats_client, command, reply, namespace=bus_settings.namespace)

    return send
