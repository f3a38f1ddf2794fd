"""Database URLs for tests: SQLite files and throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg

from aifactory.testing.docker import docker_available


def sqlite_url(path: Path) -> str:
    """The async SQLAlchemy URL of a SQLite file."""
    return f"sqlite+aiosqlite:///{path}"


def asyncpg_url(url: str) -> str:
    """``url`` with the asyncpg driver, whatever PostgreSQL scheme it was given with."""
    for scheme in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+asyncpg://" + url[len(scheme) :]
    raise ValueError(f"not a PostgreSQL URL: {url!r}")


@contextmanager
def postgres_server_url() -> Iterator[str | None]:
    """``POSTGRES_URL``/``DATABASE_URL``, else a testcontainers PostgreSQL, else None."""
    url = os.environ.get("POSTGRES_URL") or os.environ.get("DATABASE_URL")
    if url and url.startswith(("postgres", "postgresql")):
        yield asyncpg_url(url)
        return
    if docker_available():
        from testcontainers.community.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="asyncpg") as container:
            yield container.get_connection_url()
        return
    yield None


@asynccontextmanager
async def temporary_postgres_database(server_url: str) -> AsyncIterator[str]:
    """A new, empty database on the server of ``server_url``; dropped afterwards."""
    name = f"aifactory_test_{uuid.uuid4().hex[:12]}"
    base, _, _ = server_url.rpartition("/")
    admin_dsn = server_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{base}/{name}"
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
