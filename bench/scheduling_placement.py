"""Placement decisions per second at 10,000 nodes x 8 accelerators, index vs full scan.

Builds a factory of 10,000 B200 nodes (8 accelerators each; racks of 16 nodes, NVLink
domains of 8 nodes, two sites), fills it to about 80 % with a mix of jobs, then
measures a steady stream of decisions: each decision is one submission to the engine
(placed, or queued and withdrawn), and a job ends whenever usage is above the target,
so the factory stays busy. The same stream is replayed with a naive placement that
scans every node per decision (the baseline), in the same run, for the ratio.

    uv run python bench/scheduling_placement.py [--nodes 10000] [--decisions 200000]
"""

# Report lines and the literal request body are printed / kept whole for readability.
# ruff: noqa: E501

from __future__ import annotations

import argparse
import datetime as dt
import random
import time
from collections import deque

from aifactory.scheduling import engine as engine_module
from aifactory.scheduling.capacity import CapacityIndex
from aifactory.scheduling.domain import Job
from aifactory.scheduling.engine import Engine, Placed
from aifactory.scheduling.placement import Placement

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
SHAPES = [  # (weight, nodes, accelerators per node)
    (20, 1, 1),
    (15, 1, 2),
    (15, 1, 4),
    (15, 1, 8),
    (15, 2, 8),
    (10, 4, 8),
    (7, 8, 8),
    (3, 16, 8),
]


def build(nodes: int) -> Engine:
    engine = Engine()
    for site in ("fra1", "par1"):
        engine.index.upsert_site(site, "EU/DE" if site == "fra1" else "EU/FR")
    per_rack = 16
    for r in range((nodes + per_rack - 1) // per_rack):
        site = "fra1" if r % 2 == 0 else "par1"
        engine.index.upsert_rack(f"r{r:04d}", site, 64)
        for n in range(per_rack):
            if r * per_rack + n >= nodes:
                break
            engine.index.upsert_node(
                f"r{r:04d}-n{n:02d}",
                site_id=site,
                rack_id=f"r{r:04d}",
                model="B200",
                capacity=8,
                state="available",
                dedicated=None,
            )
    for t in range(8):
        engine.set_quota(f"tenant-{t}", "*", 10**9)
    engine.pass_pending = False
    return engine


def jobs(count: int, seed: int) -> list[Job]:
    rng = random.Random(seed)
    weights = [w for w, _, _ in SHAPES]
    made = []
    for i in range(count):
        _, n, width = rng.choices(SHAPES, weights)[0]
        made.append(
            Job(
                job_id=f"s{seed}-j{i}",
                tenant=f"tenant-{rng.randrange(8)}",
                client_job_id=str(i),
                name="b",
                priority="standard",
                models=("B200",),
                total=n * width,
                width=width,
                runtime_s=3600,
                allowed_sites=frozenset(),
                jurisdictions=(),
                key_id=None,
                isolation="dedicated-node",
                seq=0,
                submitted_at=NOW,
            )
        )
    return made


def full_scan(
    index: CapacityIndex, tenant: str, model: str, site: str, width: int, count: int
) -> Placement | None:
    """The baseline: look at every node of the factory for every decision."""
    by_rack: dict[str, list] = {}
    for node in index.nodes.values():
        if (
            node.model == model
            and node.site_id == site
            and node.schedulable
            and node.owner in (tenant, "")
            and node.free >= width
        ):
            by_rack.setdefault(node.rack_id, []).append(node)
    chosen = []
    for rack in sorted(by_rack, key=lambda r: -len(by_rack[r])):
        for node in sorted(by_rack[rack], key=lambda n: (n.free, n.node_id)):
            chosen.append(node)
            if len(chosen) == count:
                return Placement(
                    model,
                    site,
                    tuple(n.node_id for n in chosen),
                    width,
                    rack_ids=tuple(n.rack_id for n in chosen),
                    racks_spanned=len({n.rack_id for n in chosen}),
                )
    return None


class Busy:
    """The jobs running on an engine, oldest first, and the accelerators they hold."""

    def __init__(self) -> None:
        self.running: deque[Job] = deque()
        self.used = 0


def run(
    engine: Engine, busy: Busy, stream: list[Job], capacity: int, target: float
) -> tuple[float, float, int, int]:
    """Submit ``stream``; returns (seconds deciding, seconds in all, placed, queued).

    Deciding is the submission itself (admission checks, placement search, allocation);
    the rest is ending jobs (releasing their accelerators) to keep the factory busy.
    """
    running = busy.running
    placed = 0
    deciding = 0.0
    clock = time.perf_counter
    started = clock()
    for job in stream:
        before = clock()
        outcome = engine.submit(job, NOW)
        deciding += clock() - before
        if isinstance(outcome[-1], Placed):
            running.append(job)
            busy.used += job.total
            placed += 1
        else:
            engine.cancel(job)
        while busy.used > capacity * target and running:
            done = running.popleft()
            engine.report_ended(done, None, "finished")
            busy.used -= done.total
        engine.pass_pending = False  # the bench measures decisions, not passes
    return deciding, clock() - started, placed, len(stream) - placed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--baseline-decisions", type=int, default=3_000)
    args = parser.parse_args()
    capacity = args.nodes * 8

    engine, busy = build(args.nodes), Busy()
    run(engine, busy, jobs(20_000, seed=1), capacity, 0.8)
    stream = jobs(args.decisions, seed=2)
    deciding, elapsed, placed, queued = run(engine, busy, stream, capacity, 0.8)
    decisions = len(stream) / deciding
    cycle = len(stream) / elapsed
    print(
        f"factory: {args.nodes} nodes x 8 accelerators, ~80% busy; job mix (weight, nodes, per node) {SHAPES}"
    )
    print(
        f"indexed:   {decisions:,.0f} decisions/s ({deciding * 1e6 / len(stream):.1f} us each; "
        f"{placed} placed, {queued} queued)"
    )
    print(
        f"           {cycle:,.0f} jobs/s submit + end cycle ({elapsed * 1e6 / len(stream):.1f} us per job)"
    )

    baseline, busy = build(args.nodes), Busy()
    original = engine_module.place_gang
    engine_module.place_gang = full_scan  # type: ignore[assignment]
    try:
        run(baseline, busy, jobs(20_000, seed=1), capacity, 0.8)
        sample = jobs(args.baseline_decisions, seed=2)
        b_deciding, _, _, _ = run(baseline, busy, sample, capacity, 0.8)
    finally:
        engine_module.place_gang = original
    scan = len(sample) / b_deciding
    print(
        f"full scan: {scan:,.0f} decisions/s ({b_deciding * 1e6 / len(sample):.0f} us each, {len(sample)} decisions)"
    )
    print(
        f"ratio:     indexed / full scan = {decisions / scan:.0f}x   (target: >= 50,000 decisions/s)"
    )


if __name__ == "__main__":
    main()
