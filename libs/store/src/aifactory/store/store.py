"""The async database of one service: engine, sessions and units of work.

``Store(url)`` opens nothing until first used. SQLite files get WAL mode, a busy
timeout and ``synchronous=NORMAL`` (durable across process crashes, the failure this
project defends against; a power cut may lose the last transactions). PostgreSQL uses
asyncpg. ``create_all`` creates the tables registered with SQLModel; a service that
must keep data across upgrades adds migrations (see docs/bus-kit.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from aifactory.store.settings import async_url
from aifactory.store.uow import UnitOfWork


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """One service's database."""

    def __init__(self, url: str, *, source: str = "/aifactory/unknown", echo: bool = False) -> None:
        self.url = async_url(url)
        self.source = source
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            path = self.url.split(":///", 1)[1] if ":///" in self.url else ""
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        else:
            # pool_recycle instead of pool_pre_ping: a ping costs a round trip per unit of work.
            kwargs.update(pool_size=5, max_overflow=5, pool_recycle=1800)
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )

    async def create_all(self) -> None:
        """Create every table known to SQLModel that does not exist yet."""
        async with self.engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A plain session (no transaction begun)."""
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """A transaction: commits when the block ends normally, rolls back on error.

        Events emitted through the unit of work and inbox marks commit with it.
        """
        uow = UnitOfWork(self._sessions, source=self.source, dialect=self.engine.dialect.name)
        try:
            yield uow
            await uow.commit()
        except BaseException:
            await uow.rollback()
            raise
        finally:
            await uow.close()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()
