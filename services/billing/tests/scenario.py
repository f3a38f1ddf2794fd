"""A scripted month of job history and the invoice computed by hand from it.

November 2026, tenant ``acme`` (account in EUR) and ``globex`` (no account). Rates:
GB200 standard 4.00 EUR per accelerator-hour, 5.00 from 2026-11-16; GB200
preemptible 1.50; H100 standard 2.00 (no H100 preemptible rate); GB200 node-hour
30.00; no B300 rate at all. The jobs (all GB200 at ``fra1`` unless said):

- j1: standard, 8 accelerators (n1 4 + n2 4), started 11-03 10:05, finished 12:05:
  16 accelerator-hours at 4.00.
- j2: preemptible, n3 (4). Attempt 1 started 11-05 08:00, preempted 09:30 (6 h);
  attempt 2 placed 10:00, started (no attempt number) 10:00, finished 11:00 (4 h):
  10 h at 1.50 = 15.00.
- j3: standard, n4 (8). Attempt 1 started 11-10 00:10; n4 failed at 00:30
  (inventory), requeued 00:31 (node_failed): 8 x 20 min = 8/3 h at 4.00, credited
  (node failure within 30 min of start). Attempt 2 on n5 (8) 01:00-03:00: 16 h.
- j4: standard, n1 (4), 11-15 22:00 - 11-16 02:00, across the rate change:
  8 h at 4.00 and 8 h at 5.00.
- j5: standard, n2 (4), 11-30 22:00 - 12-01 01:00: 8 h in November at 5.00.
- j6: H100 preemptible at ``ams1``, h1 (2), 1 h: unpriced, ``missing_rate``.
- j7: B300 standard, b1 (1), 30 min: unpriced, ``unknown_model``.
- j8: standard, n2 (4), started 11-22 12:00 but finished 11:00: unpriced,
  ``negative_duration`` (-4 h).
- node d1 dedicated to acme 11-25 00:00 - 11-26 00:00: 24 node-hours at 30.00;
  j9 on d1 (8) 11-25 01:00-03:00 is covered by the dedication (not billed again).
- j10 of globex (no account): H100 standard, 1 accelerator, 1 h: ``unknown_tenant``.

acme, by hand: standard at 4.00: 16 + 8/3 + 16 + 8 = 128/3 h -> 512/3 = 170.67;
at 5.00: 8 + 8 = 16 h -> 80.00; preemptible 15.00; dedicated 720.00; subtotal
985.67; credit 8/3 h x 4.00 = 32/3 -> -10.67; total 975.00; 3 unpriced records.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from aifactory.contracts.base import Contract
from aifactory.contracts.billing.v1 import SetAccount, SetRate
from aifactory.contracts.inventory.v1 import (
    DedicationChanged,
    Node,
    NodeRegistered,
    NodeStateChanged,
)
from aifactory.contracts.jobs.v1 import (
    JobFinished,
    JobPlaced,
    JobPreempted,
    JobRequeued,
    JobStarted,
    NodeAllocation,
)
from aifactory.store.events import NewEvent

PERIOD_START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
PERIOD_END = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
RATE_START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
RATE_CHANGE = dt.datetime(2026, 11, 16, tzinfo=dt.UTC)


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    """An instant in November 2026 (or ``month``), UTC."""
    return dt.datetime(2026, month, day, hour, minute, tzinfo=dt.UTC)


def rate_commands() -> list[Contract]:
    """The rate card and accounts of the scenario, as commands."""
    actor = "finance@test"
    return [
        SetAccount(tenant="acme", currency="EUR", name="ACME", actor=actor),
        SetRate(kind="accelerator_hour", model="GB200", priority="standard",
                unit_price=Decimal("4.00"), currency="EUR", effective_from=RATE_START, actor=actor),
        SetRate(kind="accelerator_hour", model="GB200", priority="standard",
                unit_price=Decimal("5.00"), currency="EUR", effective_from=RATE_CHANGE, actor=actor),
        SetRate(kind="accelerator_hour", model="GB200", priority="preemptible",
                unit_price=Decimal("1.50"), currency="EUR", effective_from=RATE_START, actor=actor),
        SetRate(kind="accelerator_hour", model="H100", priority="standard",
                unit_price=Decimal("2.00"), currency="EUR", effective_from=RATE_START, actor=actor),
        SetRate(kind="node_hour", model="GB200", unit_price=Decimal("30.00"), currency="EUR",
                effective_from=RATE_START, actor=actor),
    ]  # fmt: skip


class Script:
    """Builds the events of a job history with fixed ids and CloudEvents times."""

    def __init__(self) -> None:
        self.events: list[tuple[NewEvent, str, dt.datetime]] = []

    def add(self, data: Contract, when: dt.datetime, *, tenant: str | None = None,
            scope: str | None = None) -> None:  # fmt: skip
        """Record an event published at ``when`` (its CloudEvents time)."""
        event_id = str(uuid.uuid4())
        self.events.append((NewEvent(data, tenant=tenant, scope=scope), event_id, when))

    def placed(self, job: str, attempt: int, when: dt.datetime, nodes: list[tuple[str, int]],
               *, tenant: str = "acme", model: str = "GB200", priority: str = "standard",
               site: str = "fra1") -> None:  # fmt: skip
        """A placement."""
        self.add(
            JobPlaced(
                job_id=job, tenant=tenant, attempt=attempt, model=model, site_id=site,
                priority=priority,  # type: ignore[arg-type]
                allocations=[
                    NodeAllocation(node_id=n, rack_id="r1", accelerator_indices=list(range(c)))
                    for n, c in nodes
                ],
                racks_spanned=1, domains_spanned=1, placed_at=when,
            ),
            when, tenant=tenant,
        )  # fmt: skip

    def started(
        self, job: str, attempt: int | None, when: dt.datetime, tenant: str = "acme"
    ) -> None:
        """A start report."""
        self.add(JobStarted(job_id=job, tenant=tenant, attempt=attempt, started_at=when), when,
                 tenant=tenant)  # fmt: skip

    def finished(
        self, job: str, attempt: int | None, when: dt.datetime, tenant: str = "acme"
    ) -> None:
        """A finish report."""
        self.add(JobFinished(job_id=job, tenant=tenant, attempt=attempt, finished_at=when), when,
                 tenant=tenant)  # fmt: skip

    def run(self, job: str, start: dt.datetime, end: dt.datetime, nodes: list[tuple[str, int]],
            **placement: str) -> None:  # fmt: skip
        """Placed and started at ``start``, finished at ``end`` (attempt 1)."""
        tenant = placement.get("tenant", "acme")
        self.placed(job, 1, start, nodes, **placement)
        self.started(job, 1, start, tenant)
        self.finished(job, 1, end, tenant)


def node_failed(node: str, when: dt.datetime) -> NodeStateChanged:
    """Inventory marking ``node`` failed."""
    return NodeStateChanged(
        node_id=node, site_id="fra1", rack_id="r1", model="GB200", accelerator_count=8,
        from_state="available", to_state="failed", reason="xid 79", actor="health",
        changed_at=when,
    )  # fmt: skip


def dedication(node: str, tenant: str | None, previous: str | None) -> DedicationChanged:
    """Inventory (un)dedicating ``node``; the instant is the event's CloudEvents time."""
    return DedicationChanged(
        target="node", target_id=node, site_id="fra1", previous_tenant=previous, tenant=tenant,
        node_ids=[node], actor="ops",
    )  # fmt: skip


def node_registered(node: str, model: str, when: dt.datetime) -> NodeRegistered:
    """Inventory registering an 8-accelerator node at fra1."""
    return NodeRegistered(
        node=Node(
            node_id=node, site_id="fra1", rack_id="r1", model=model,  # type: ignore[arg-type]
            accelerator_count=8, accelerator_memory_gib=180, cpu_cores=112, ram_gib=2048,
            state="available", state_changed_at=when, registered_at=when, updated_at=when,
        ),
        actor="ops",
    )  # fmt: skip


def november() -> Script:
    """The scripted history of the module docstring."""
    s = Script()
    s.run("j1", at(3, 10, 0), at(3, 12, 5), [("n1", 4), ("n2", 4)])
    s.started("j1", 1, at(3, 10, 5))  # the real start, reported after the placement
    # j2: preempted, then a second attempt whose start report carries no attempt number
    s.placed("j2", 1, at(5, 8), [("n3", 4)], priority="preemptible")
    s.started("j2", 1, at(5, 8))
    s.add(JobPreempted(job_id="j2", tenant="acme", attempt=1, by_job_id="jx", node_ids=["n3"],
                       preempted_at=at(5, 9, 30)), at(5, 9, 30), tenant="acme")  # fmt: skip
    s.placed("j2", 2, at(5, 10), [("n3", 4)], priority="preemptible")
    s.started("j2", None, at(5, 10))
    s.finished("j2", None, at(5, 11))
    # j3: node n4 fails 20 minutes into the run; requeued; second attempt on n5
    s.placed("j3", 1, at(10, 0), [("n4", 8)])
    s.started("j3", 1, at(10, 0, 10))
    s.add(node_failed("n4", at(10, 0, 30)), at(10, 0, 30), scope="fra1")
    s.add(JobRequeued(job_id="j3", tenant="acme", attempt=1, reason="node_failed", requeues=1,
                      requeued_at=at(10, 0, 31)), at(10, 0, 31), tenant="acme")  # fmt: skip
    s.placed("j3", 2, at(10, 1), [("n5", 8)])
    s.started("j3", 2, at(10, 1))
    s.finished("j3", 2, at(10, 3))
    s.run("j4", at(15, 22), at(16, 2), [("n1", 4)])
    s.run("j5", at(30, 22), at(1, 1, month=12), [("n2", 4)])
    s.run("j6", at(20, 10), at(20, 11), [("h1", 2)], model="H100", priority="preemptible",
          site="ams1")  # fmt: skip
    s.run("j7", at(21, 10), at(21, 10, 30), [("b1", 1)], model="B300")
    s.placed("j8", 1, at(22, 10), [("n2", 4)])
    s.started("j8", 1, at(22, 12))
    s.finished("j8", 1, at(22, 11))
    s.add(node_registered("d1", "GB200", at(1, 0)), at(1, 0), scope="fra1")
    s.add(dedication("d1", "acme", None), at(25, 0), scope="fra1")
    s.run("j9", at(25, 1), at(25, 3), [("d1", 8)])
    s.add(dedication("d1", None, "acme"), at(26, 0), scope="fra1")
    s.run("j10", at(12, 9), at(12, 10), [("h2", 1)], tenant="globex", model="H100")
    return s


EXPECTED_ACME = {
    # (kind, model, priority, site, unit price) -> (quantity, amount, records)
    ("usage", "GB200", "preemptible", "fra1", "1.50"): ("10.000000", "15.00", 2),
    ("usage", "GB200", "standard", "fra1", "4.00"): ("42.666667", "170.67", 4),
    ("usage", "GB200", "standard", "fra1", "5.00"): ("16.000000", "80.00", 1),
    ("dedicated", "GB200", None, "fra1", "30.00"): ("24.000000", "720.00", 1),
    ("credit", "GB200", "standard", "fra1", "4.00"): ("2.666667", "-10.67", 1),
    ("unpriced", "H100", "preemptible", "ams1", None): ("2.000000", "0.00", 1),
    ("unpriced", "B300", "standard", "fra1", None): ("0.500000", "0.00", 1),
    ("unpriced", "GB200", "standard", "fra1", None): ("-4.000000", "0.00", 1),
}
EXPECTED_ACME_TOTALS = {"subtotal": "985.67", "credits": "-10.67", "total": "975.00"}
EXPECTED_UNPRICED_REASONS = {
    "H100": "missing_rate",
    "B300": "unknown_model",
    "GB200": "negative_duration",
}


def line_table(invoice: object) -> dict[tuple[object, ...], tuple[str, str, int]]:
    """An invoice's lines as ``EXPECTED_ACME`` spells them."""
    table = {}
    for line in invoice.lines:  # type: ignore[attr-defined]
        key = (line.kind, line.model, line.priority, line.site_id,
               str(line.unit_price) if line.unit_price is not None else None)  # fmt: skip
        table[key] = (str(line.quantity), str(line.amount), line.records)
    return table
