"""What must hold in the event log after any run, crashes included.

``check_job_log`` walks ``FACTORY_JOBS`` in stream order (the order every consumer
sees) and returns a ``JobLogReport`` listing each broken rule: a job accepted twice,
a placement attempt published twice or out of order, a job placed again while its
previous placement still held accelerators, an accelerator held by two jobs at once.
``check_state_chain`` does the same for a node's admin-state events (each change
starts from where the previous one ended: none lost, none doubled).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aifactory.contracts.envelope import Envelope
from aifactory.contracts.inventory.v1 import NodeStateChanged
from aifactory.contracts.jobs.v1 import (
    JobAbandoned,
    JobAccepted,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobPlaced,
    JobPreempted,
    JobRequeued,
)


@dataclass
class JobLogReport:
    """What the job log says, and every rule it breaks."""

    accepted: Counter[str] = field(default_factory=Counter)
    placements: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    finished: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def placed_once(self) -> bool:
        """Whether every placed job was placed exactly once."""
        return all(len(attempts) == 1 for attempts in self.placements.values())


def check_job_log(log: Iterable[Envelope[Any]]) -> JobLogReport:
    """Replay the job events in stream order and check accelerator exclusivity."""
    report = JobLogReport()
    holder: dict[tuple[str, int], str] = {}  # (node, accelerator index) -> job id
    held: dict[str, set[tuple[str, int]]] = {}  # job id -> what its live placement holds
    current: dict[str, int] = {}  # job id -> attempt of its latest placement

    def release(job_id: str, attempt: int | None) -> None:
        if attempt is not None and current.get(job_id) != attempt:
            return  # a report about an older placement
        for accelerator in held.pop(job_id, set()):
            holder.pop(accelerator, None)

    for envelope in log:
        event = envelope.data
        match event:
            case JobAccepted(job_id=job_id):
                report.accepted[job_id] += 1
                if report.accepted[job_id] > 1:
                    report.problems.append(f"{job_id} accepted {report.accepted[job_id]} times")
            case JobPlaced(job_id=job_id, attempt=attempt):
                previous = report.placements[job_id]
                if previous and attempt <= previous[-1]:
                    report.problems.append(
                        f"{job_id} placement attempt {attempt} after attempt {previous[-1]}"
                    )
                if job_id in held:
                    report.problems.append(
                        f"{job_id} placed again (attempt {attempt}) while attempt "
                        f"{current[job_id]} still holds accelerators"
                    )
                previous.append(attempt)
                current[job_id] = attempt
                mine = {(a.node_id, i) for a in event.allocations for i in a.accelerator_indices}
                for accelerator in sorted(mine):
                    other = holder.get(accelerator)
                    if other is not None and other != job_id:
                        report.problems.append(f"{job_id} placed on {accelerator} held by {other}")
                    holder[accelerator] = job_id
                held[job_id] = mine
            case JobFinished(job_id=job_id, attempt=attempt):
                if attempt is None or current.get(job_id) == attempt:
                    report.finished.add(job_id)
                release(job_id, attempt)
            case JobFailed(job_id=job_id, attempt=attempt):
                release(job_id, attempt)
            case (
                JobRequeued(job_id=job_id, attempt=attempt)
                | JobPreempted(job_id=job_id, attempt=attempt)
                | JobAbandoned(job_id=job_id, attempt=attempt)
            ):
                release(job_id, attempt)
            case JobCancelled(job_id=job_id):
                release(job_id, None)
            case _:
                pass
    return report


def check_state_chain(log: Iterable[Envelope[Any]], node_id: str) -> list[str]:
    """Problems in one node's state events: each must start where the previous one ended."""
    problems: list[str] = []
    last: str | None = None
    for envelope in log:
        event = envelope.data
        if not isinstance(event, NodeStateChanged) or event.node_id != node_id:
            continue
        if last is not None and event.from_state != last:
            problems.append(
                f"{node_id}: {event.from_state} -> {event.to_state} follows a change to {last}"
            )
        last = event.to_state
    return problems
