"""The batch ledger on a real database (SQLite and PostgreSQL): facts as the inbox, skips.

``apply_batch`` is called the way the consumer calls it, one unit of work per batch,
without the kit's inbox (``app.USE_KIT_INBOX``): redeliveries must be recognised by
the fact tables alone, and the shortcuts (start reports, metered ends read from the
records) must never change what is recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from aifactory.billing.ledger import apply_batch, void_event
from aifactory.billing.tables import LedgerRow
from aifactory.contracts.base import Contract
from aifactory.contracts.billing.v1 import UsageRecorded
from aifactory.contracts.envelope import Envelope, build_message, read_message
from aifactory.contracts.health.v1 import NodeHealthChanged
from aifactory.contracts.jobs.v1 import JobFinished, JobPlaced, JobStarted, NodeAllocation
from aifactory.store.store import Store

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 3, 10, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """The billing tables in a fresh database."""
    store = Store(database_url, source="/aifactory/billing")
    await store.create_all()
    yield store
    await store.dispose()


def envelope(
    data: Contract, *, tenant: str | None = "acme", scope: str | None = None
) -> Envelope[Contract]:
    """``data`` as the consumer reads it off the bus (a new event id)."""
    message = build_message(data, source="/aifactory/test", tenant=tenant, scope=scope)
    return read_message(message.headers, message.body)


def placed(job_id: str, node_id: str = "n1", at: dt.datetime = T0) -> Envelope[Contract]:
    """The placement of attempt 1 of ``job_id`` on 4 accelerators of ``node_id``."""
    return envelope(
        JobPlaced(
            job_id=job_id, tenant="acme", attempt=1, model="GB200", site_id="fra1",
            priority="standard", racks_spanned=1, domains_spanned=1, placed_at=at,
            allocations=[NodeAllocation(node_id=node_id, rack_id="r1",
                                        accelerator_indices=[0, 1, 2, 3])],
        )
    )  # fmt: skip


def started(job_id: str, at: dt.datetime) -> Envelope[Contract]:
    """The start report of attempt 1."""
    return envelope(JobStarted(job_id=job_id, tenant="acme", attempt=1, started_at=at))


def finished(job_id: str, at: dt.datetime) -> Envelope[Contract]:
    """The end report of attempt 1."""
    return envelope(JobFinished(job_id=job_id, tenant="acme", attempt=1, finished_at=at))


def node_failed(node_id: str, at: dt.datetime) -> Envelope[Contract]:
    """A ``failed`` health verdict first seen at ``at``."""
    return envelope(
        NodeHealthChanged(
            node_id=node_id, site_id="fra1", verdict="failed", first_seen=at, observed_at=at
        ),
        tenant=None,
        scope="fra1",
    )


async def apply(store: Store, batch: list[Envelope[Contract]]) -> list[UsageRecorded]:
    """Apply one batch in its own transaction; the ``usage_recorded`` events it emits."""
    async with store.unit_of_work() as uow:
        events = await apply_batch(batch, uow, recorded_ms=0)
    recorded = [e.data for e in events]
    assert all(isinstance(e, UsageRecorded) for e in recorded)
    return recorded  # type: ignore[return-value]


async def ledger_size(store: Store) -> int:
    """How many ledger entries there are."""
    async with store.session() as session:
        result = await session.exec(select(func.count()).select_from(LedgerRow))  # type: ignore[call-overload]
        return int(result.one()[0])


def span(entry: UsageRecorded) -> tuple[str, dt.datetime, dt.datetime | None]:
    """An entry's kind and metered window."""
    return entry.entry, entry.start, entry.end


async def test_redelivered_events_append_nothing(store: Store) -> None:
    """A batch delivered again, alone or mixed with new events, adds entries only for the new ones."""
    first = [placed("j1"), started("j1", T0), finished("j1", T0 + HOUR)]
    assert [span(e) for e in await apply(store, first)] == [("record", T0, T0 + HOUR)]

    assert await apply(store, first) == []
    mixed = [first[2], placed("j2"), finished("j2", T0 + 2 * HOUR), first[0]]
    recorded = await apply(store, mixed)
    assert [(e.job_id, e.entry) for e in recorded] == [("j2", "record")]
    assert await ledger_size(store) == 2


async def test_a_start_report_alone_records_nothing(store: Store) -> None:
    """A start of a running attempt appends nothing; its end then records from the reported start."""
    assert await apply(store, [placed("j1")]) == []
    assert await apply(store, [started("j1", T0 + HOUR)]) == []
    recorded = await apply(store, [finished("j1", T0 + 3 * HOUR)])
    assert [span(e) for e in recorded] == [("record", T0 + HOUR, T0 + 3 * HOUR)]


async def test_a_late_start_report_reverses_and_records_again(store: Store) -> None:
    """A start reported after the end moves the recorded start: a reversal and a new record."""
    await apply(store, [placed("j1"), finished("j1", T0 + 3 * HOUR)])
    recorded = await apply(store, [started("j1", T0 + HOUR)])
    assert [span(e) for e in recorded] == [
        ("reversal", T0, T0 + 3 * HOUR),
        ("record", T0 + HOUR, T0 + 3 * HOUR),
    ]


async def test_node_failures_reach_attempts_by_their_recorded_end(store: Store) -> None:
    """A node failure after an attempt's recorded end changes nothing; one inside it cuts it there."""
    await apply(store, [placed("j1"), started("j1", T0), finished("j1", T0 + 2 * HOUR)])
    await apply(store, [placed("j2", "n2"), started("j2", T0)])  # still running on n2

    assert await apply(store, [node_failed("n1", T0 + 3 * HOUR)]) == []
    cut = await apply(store, [node_failed("n1", T0 + HOUR)])
    assert [(*span(e), e.node_failure) for e in cut] == [
        ("reversal", T0, T0 + 2 * HOUR, False),
        ("record", T0, T0 + HOUR, True),
    ]
    ended = await apply(store, [node_failed("n2", T0 + 4 * HOUR)])
    assert [(e.job_id, *span(e), e.node_failure) for e in ended] == [
        ("j2", "record", T0, T0 + 4 * HOUR, True)
    ]


async def test_voiding_a_node_failure_restores_the_attempt_it_cut(store: Store) -> None:
    """Voiding the failure that cut an attempt reverses the cut record and records the full window again."""
    await apply(store, [placed("j1"), started("j1", T0), finished("j1", T0 + 4 * HOUR)])
    failure = node_failed("n1", T0 + HOUR)
    await apply(store, [failure])
    async with store.unit_of_work() as uow:
        result, events = await void_event(
            failure.event.id, uow, source="/aifactory/test", recorded_ms=0
        )
    assert result == (1, 2)
    assert [(*span(e.data), e.data.node_failure) for e in events] == [  # type: ignore[attr-defined]
        ("reversal", T0, T0 + HOUR, True),
        ("record", T0, T0 + 4 * HOUR, False),
    ]
