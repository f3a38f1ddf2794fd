"""Reading facts out of consumed events (pure).

Each consumed event becomes zero or more fact rows: job facts (placements, start
reports, endings) and node facts (failure instants, dedication changes, a node's
model and site). The event's ``ce-id`` keys the facts, so a replayed event can never
add a second copy. A ``DedicationChanged`` carries no time of its own: its CloudEvents
``time`` is the instant of the change.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from aifactory.contracts.base import Contract
from aifactory.contracts.envelope import Envelope
from aifactory.contracts.health.v1 import NodeHealthChanged
from aifactory.contracts.inventory.v1 import (
    DedicationChanged,
    NodeRegistered,
    NodeStateChanged,
    NodeUpdated,
)
from aifactory.contracts.jobs.v1 import (
    JobAbandoned,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobPlaced,
    JobPreempted,
    JobRequeued,
    JobStarted,
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ONE_MS = dt.timedelta(milliseconds=1)
FAILED_VERDICTS = frozenset({"failed", "unreachable"})

JOB_EVENTS: tuple[type[Contract], ...] = (
    JobPlaced,
    JobStarted,
    JobFinished,
    JobFailed,
    JobPreempted,
    JobRequeued,
    JobCancelled,
    JobAbandoned,
)
INVENTORY_EVENTS: tuple[type[Contract], ...] = (
    NodeRegistered,
    NodeUpdated,
    NodeStateChanged,
    DedicationChanged,
)
HEALTH_EVENTS: tuple[type[Contract], ...] = (NodeHealthChanged,)


def to_ms(instant: dt.datetime) -> int:
    """Milliseconds since the epoch (exact integer arithmetic, no float)."""
    return (instant - EPOCH) // ONE_MS


def from_ms(milliseconds: int) -> dt.datetime:
    """The UTC instant of ``milliseconds`` since the epoch."""
    return EPOCH + milliseconds * ONE_MS


@dataclass
class ExtractedFacts:
    """Rows for ``billing_job_facts``, ``billing_node_facts`` and ``billing_allocations``."""

    job_facts: list[dict[str, object]] = field(default_factory=list)
    node_facts: list[dict[str, object]] = field(default_factory=list)
    allocations: list[dict[str, object]] = field(default_factory=list)


def _job_fact(
    envelope: Envelope[Contract],
    *,
    job_id: str,
    kind: str,
    at: dt.datetime,
    attempt: int | None,
    tenant: str,
    **extra: object,
) -> dict[str, object]:
    at_ms = to_ms(at)
    reported = envelope.event.time
    return {
        "event_id": envelope.event.id,
        "job_id": job_id,
        "kind": kind,
        "attempt": attempt,
        "at_ms": at_ms,
        "reported_ms": to_ms(reported) if reported is not None else at_ms,
        "tenant": tenant,
        "model": extra.get("model", ""),
        "site_id": extra.get("site_id", ""),
        "priority": extra.get("priority", ""),
        "allocations": extra.get("allocations", ""),
        "node_failure": bool(extra.get("node_failure", False)),
        "voided": False,
    }


def _node_fact(
    envelope: Envelope[Contract],
    node_id: str,
    kind: str,
    at: dt.datetime,
    *,
    tenant: str | None = None,
    model: str = "",
    site_id: str = "",
) -> dict[str, object]:
    return {
        "fact_id": f"{envelope.event.id}/{kind}/{node_id}",
        "event_id": envelope.event.id,
        "node_id": node_id,
        "kind": kind,
        "at_ms": to_ms(at),
        "tenant": tenant,
        "model": model,
        "site_id": site_id,
        "voided": False,
    }


_REPORTS: dict[type[Contract], tuple[str, str]] = {
    JobStarted: ("started", "started_at"),
    JobFinished: ("finished", "finished_at"),
    JobFailed: ("failed", "failed_at"),
    JobPreempted: ("preempted", "preempted_at"),
    JobRequeued: ("requeued", "requeued_at"),
    JobCancelled: ("cancelled", "cancelled_at"),
    JobAbandoned: ("abandoned", "abandoned_at"),
}
"""Job reports after a placement: the fact kind each gives and the field with its instant."""


def extract(envelope: Envelope[Contract], into: ExtractedFacts) -> None:
    """Append the facts ``envelope`` tells to ``into``."""
    data = envelope.data
    jobs = into.job_facts
    if isinstance(data, JobPlaced):
        placed_ms = to_ms(data.placed_at)
        jobs.append(
            _job_fact(
                envelope,
                job_id=data.job_id,
                kind="placed",
                at=data.placed_at,
                attempt=data.attempt,
                tenant=data.tenant,
                model=data.model,
                site_id=data.site_id,
                priority=data.priority,
                allocations=",".join(
                    f"{a.node_id}:{len(a.accelerator_indices)}" for a in data.allocations
                ),
            )
        )
        into.allocations.extend(
            {
                "job_id": data.job_id,
                "attempt": data.attempt,
                "node_id": a.node_id,
                "placed_ms": placed_ms,
            }
            for a in data.allocations
        )
    elif (report := _REPORTS.get(type(data))) is not None:
        kind, time_field = report
        jobs.append(
            _job_fact(
                envelope,
                job_id=data.job_id,  # type: ignore[attr-defined]
                kind=kind,
                at=getattr(data, time_field),
                attempt=getattr(data, "attempt", None),  # job_cancelled has none
                tenant=data.tenant,  # type: ignore[attr-defined]
                node_failure=isinstance(data, JobRequeued) and data.reason == "node_failed",
            )
        )
    else:
        _extract_node_facts(envelope, into)


def _extract_node_facts(envelope: Envelope[Contract], into: ExtractedFacts) -> None:
    data = envelope.data
    nodes = into.node_facts
    if isinstance(data, NodeHealthChanged):
        if data.verdict in FAILED_VERDICTS:
            nodes.append(_node_fact(envelope, data.node_id, "failure", data.first_seen))
    elif isinstance(data, NodeStateChanged):
        nodes.append(
            _node_fact(
                envelope,
                data.node_id,
                "info",
                data.changed_at,
                model=data.model,
                site_id=data.site_id,
            )
        )
        if data.to_state == "failed":
            nodes.append(_node_fact(envelope, data.node_id, "failure", data.changed_at))
    elif isinstance(data, NodeRegistered):
        node = data.node
        nodes.append(
            _node_fact(
                envelope,
                node.node_id,
                "info",
                node.registered_at,
                model=node.model,
                site_id=node.site_id,
            )
        )
        if node.tenant is not None:
            nodes.append(
                _node_fact(
                    envelope, node.node_id, "dedication", node.registered_at, tenant=node.tenant
                )
            )
    elif isinstance(data, NodeUpdated):
        nodes.append(
            _node_fact(
                envelope,
                data.node_id,
                "info",
                data.node.updated_at,
                model=data.node.model,
                site_id=data.node.site_id,
            )
        )
    elif isinstance(data, DedicationChanged):
        at = envelope.event.time
        if at is None:
            raise ValueError(
                "dedication_changed without a CloudEvents time: the change's instant is unknown"
            )
        nodes.extend(
            _node_fact(envelope, node_id, "dedication", at, tenant=data.tenant)
            for node_id in data.node_ids
        )
