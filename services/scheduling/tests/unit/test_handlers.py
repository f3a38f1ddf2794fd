"""The use cases on SQLite and PostgreSQL, without NATS: key gate, idempotency, reload."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aifactory.scheduling.custody import KeyStatus, StaticKeyCustody
from aifactory.scheduling.errors import JobRejected
from aifactory.scheduling.handlers import SchedulingHandlers
from aifactory.scheduling.scheduler import Scheduler
from aifactory.scheduling.store import NODES, QUOTAS, RACKS, SITES, upsert
from aifactory.store.store import Store

from ..conftest import spec


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """The scheduler's database with its tables."""
    import aifactory.scheduling.tables  # noqa: F401 - registers the tables

    db = Store(database_url, source="/aifactory/scheduling")
    await db.create_all()
    yield db
    await db.dispose()


async def seeded(store: Store, custody: StaticKeyCustody) -> SchedulingHandlers:
    """Handlers over a stored factory of one fra1 node and one iad1 node, acme with a quota."""
    async with store.unit_of_work() as uow:
        conn = await uow.session.connection()
        await upsert(
            conn,
            SITES,
            [
                {"site_id": "fra1", "jurisdiction": "EU/DE"},
                {"site_id": "iad1", "jurisdiction": "US/VA"},
            ],
            ["site_id"],
        )
        await upsert(
            conn,
            RACKS,
            [{"rack_id": f"{s}-r", "site_id": s, "domain_size": 8} for s in ("fra1", "iad1")],
            ["rack_id"],
        )
        nodes = [
            {
                "node_id": f"{s}-n1",
                "site_id": s,
                "rack_id": f"{s}-r",
                "model": "B200",
                "capacity": 8,
                "state": "available",
                "dedicated": None,
                "healthy": True,
            }
            for s in ("fra1", "iad1")
        ]
        await upsert(conn, NODES, nodes, ["node_id"])
        await upsert(
            conn,
            QUOTAS,
            [{"tenant": "acme", "model": "*", "accelerators": 64}],
            ["tenant", "model"],
        )
    return SchedulingHandlers(Scheduler(), custody)


async def test_key_gate_restricts_sites_and_rejects_where_never_allowed(store: Store) -> None:
    """A key usable only at iad1 places the job there; a key for no allowed site is a key_not_allowed rejection."""
    custody = StaticKeyCustody(
        {("acme", "us-key"): KeyStatus("enabled", allowed_sites=frozenset({"iad1"}))}
    )
    handlers = await seeded(store, custody)
    async with store.unit_of_work() as uow:
        accepted = await handlers.submit(spec("k1", key="us-key"), uow, via_event=False)
    assert accepted.state == "placed"
    assert handlers.scheduler.engine.jobs[accepted.job_id].placement.site_id == "iad1"  # type: ignore[union-attr]
    with pytest.raises(JobRejected) as refused:
        async with store.unit_of_work() as uow:
            await handlers.submit(spec("k2", key="us-key", sites=("fra1",)), uow, via_event=False)
    assert refused.value.details["reason"] == "key_not_allowed"
    with pytest.raises(JobRejected) as unknown:
        async with store.unit_of_work() as uow:
            await handlers.submit(spec("k3", key="missing"), uow, via_event=False)
    assert unknown.value.details["reason"] == "key_not_allowed"


async def test_unreachable_key_service_queues_then_recheck_places(store: Store) -> None:
    """With the key service down the job waits (key_check_pending); once it answers, the recheck lets a pass place it."""
    custody = StaticKeyCustody(allow_unknown=True, unavailable=True)
    handlers = await seeded(store, custody)
    async with store.unit_of_work() as uow:
        accepted = await handlers.submit(spec("p1", key="ds"), uow, via_event=False)
    assert (accepted.state, accepted.reason) == ("queued", "key_check_pending")
    assert await handlers.recheck_pending_keys(store) == 0
    custody.unavailable = False
    assert await handlers.recheck_pending_keys(store) == 1
    assert await handlers.scheduler.run_pass(store) == 1


async def test_rolled_back_change_is_reloaded_from_the_database(store: Store) -> None:
    """A transaction that changed the engine and rolled back leaves the engine as the database has it."""
    handlers = await seeded(store, StaticKeyCustody(allow_unknown=True))

    async def crash_before_commit() -> None:
        async with store.unit_of_work() as uow:
            await handlers.submit(spec("lost"), uow, via_event=False)
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError):
        await crash_before_commit()
    async with store.unit_of_work() as uow:
        again = await handlers.submit(spec("lost"), uow, via_event=False)
    assert again.created is True
    assert len(handlers.scheduler.engine.jobs) == 1
