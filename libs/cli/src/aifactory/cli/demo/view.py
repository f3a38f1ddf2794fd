"""The demo's live view (rich) and, when the output is not a terminal, plain progress lines.

The live view has five panels: the workload (jobs, jobs per minute, submit -> placed
latency), capacity per site and model (free / total accelerators: inventory's
available capacity minus what running jobs hold), the queue with each job's reason,
node health (verdict counts and the nodes that are not healthy) and the fault
timeline, plus messages and events per second on the bus.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from aifactory.cli.demo.faults import FaultTimeline
from aifactory.cli.demo.observer import Observer
from aifactory.cli.demo.workload import Workload

TIMELINE_SHOWN = 10


@dataclass(frozen=True, slots=True)
class ViewState:
    """Everything one frame shows."""

    workload: Workload
    observer: Observer
    timeline: FaultTimeline
    duration_s: float


def _header(state: ViewState) -> Text:
    stats = state.workload.stats
    messages_s, events_s = state.observer.rates()
    elapsed = min(state.timeline.elapsed(), state.duration_s)
    return Text(
        f"aifactory demo  {elapsed:.0f}s / {state.duration_s:.0f}s   "
        f"bus {messages_s:.0f} msg/s, {events_s:.0f} events/s\n"
        f"jobs submitted {stats.submitted}  placed {stats.placed_first}  "
        f"finished {stats.finished}  running {len(state.workload.running)}   "
        f"{stats.per_minute(stats.submitted):.0f} jobs/min   "
        f"submit->placed p50 {stats.latency_ms(0.5):.0f} ms  p99 {stats.latency_ms(0.99):.0f} ms",
        style="bold",
    )


def _capacity(state: ViewState) -> Table:
    table = Table(title="capacity (accelerators)", expand=True)
    for column in ("site", "model", "free", "available", "total", "nodes failed"):
        table.add_column(column, justify="left" if column in ("site", "model") else "right")
    report = state.observer.snapshot.capacity
    held = state.workload.in_use()
    for row in report.rows if report is not None else []:
        free = max(row.accelerators_available - held[row.site_id, row.model], 0)
        table.add_row(
            row.site_id,
            row.model,
            str(free),
            str(row.accelerators_available),
            str(row.accelerators_total),
            str(row.nodes_failed),
        )
    return table


def _queue(state: ViewState) -> Table:
    queue = state.observer.snapshot.queue
    total = queue.total if queue is not None else 0
    table = Table(title=f"queue ({total} waiting)", expand=True)
    for column in ("#", "tenant", "priority", "gpus", "reason"):
        table.add_column(column)
    for entry in queue.entries if queue is not None else []:
        table.add_row(
            str(entry.position), entry.tenant, entry.priority, str(entry.accelerators), entry.reason
        )
    return table


def _health(state: ViewState) -> Table:
    page = state.observer.snapshot.health
    counts = page.counts if page is not None else {}
    summary = ", ".join(f"{verdict} {count}" for verdict, count in sorted(counts.items()))
    table = Table(title=f"node health: {summary or '-'}", expand=True)
    for column in ("node", "site", "verdict", "why"):
        table.add_column(column)
    for node in page.nodes if page is not None else []:
        if node.verdict != "healthy":
            why = ", ".join(reason.code for reason in node.reasons) or "-"
            table.add_row(node.node_id, node.site_id, node.verdict, why)
    return table


def _timeline(state: ViewState) -> Panel:
    lines = [f"{at:6.1f}s  {text}" for at, text in state.timeline.entries[-TIMELINE_SHOWN:]]
    return Panel("\n".join(lines) or "(nothing yet)", title="faults and reactions")


def render(state: ViewState) -> RenderableType:
    """One frame of the live view."""
    stale = state.observer.snapshot.stale
    parts: list[RenderableType] = [_header(state)]
    if stale:
        parts.append(Text(f"(stale: {', '.join(sorted(stale))} did not answer)", style="yellow"))
    parts += [_capacity(state), _queue(state), _health(state), _timeline(state)]
    return Group(*parts)


def _reasons(counter: Counter[str]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counter.most_common(3)) or "-"


def progress_line(state: ViewState) -> str:
    """One plain line of progress (for logs and CI)."""
    stats = state.workload.stats
    messages_s, events_s = state.observer.rates()
    snapshot = state.observer.snapshot
    waiting = snapshot.queue.total if snapshot.queue is not None else 0
    reasons: Counter[str] = Counter(
        entry.reason for entry in (snapshot.queue.entries if snapshot.queue else [])
    )
    health = snapshot.health.counts if snapshot.health is not None else {}
    health_text = " ".join(f"{verdict}={count}" for verdict, count in sorted(health.items()))
    return (
        f"[{min(state.timeline.elapsed(), state.duration_s):5.1f}s/{state.duration_s:.0f}s] "
        f"jobs submitted={stats.submitted} placed={stats.placed_first} "
        f"finished={stats.finished} running={len(state.workload.running)} "
        f"queued={waiting} ({_reasons(reasons)}) | "
        f"{stats.per_minute(stats.submitted):.0f} jobs/min | "
        f"p50={stats.latency_ms(0.5):.0f}ms p99={stats.latency_ms(0.99):.0f}ms | "
        f"bus {messages_s:.0f} msg/s {events_s:.0f} evt/s | nodes {health_text or '-'}"
    )


class ProgressPrinter:
    """Prints ``progress_line`` every ``every_s`` seconds, and new timeline entries as they come."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._next_at = 0.0
        self._timeline_seen = 0

    def tick(self, state: ViewState) -> list[str]:
        """The lines to print now."""
        lines = [
            f"[{at:5.1f}s] {text}" for at, text in state.timeline.entries[self._timeline_seen :]
        ]
        self._timeline_seen = len(state.timeline.entries)
        now = time.monotonic()
        if now >= self._next_at:
            self._next_at = now + self.every_s
            lines.append(progress_line(state))
        return lines
