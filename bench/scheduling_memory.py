"""Memory of the scheduler with 10,000 nodes x 8 accelerators and 100,000 queued jobs.

Builds the engine the service holds in memory (capacity index of 10,000 nodes, the
factory about 80 % busy, then ``--queued`` more jobs that wait) with the service's
modules imported, and prints the process's resident set size (RSS, from /proc) before
and after, plus the time one scheduling pass over the whole queue takes.

    uv run python bench/scheduling_memory.py [--nodes 10000] [--queued 100000]
"""

# Report lines and the literal request body are printed / kept whole for readability.
# ruff: noqa: E501

from __future__ import annotations

import argparse
import datetime as dt
import gc
import time
from pathlib import Path

import aifactory.scheduling.app  # noqa: F401 - the service's imports count in its RSS
from aifactory.scheduling.domain import Job
from aifactory.scheduling.engine import Engine

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def job(i: int, total: int, width: int, tenant: str) -> Job:
    return Job(
        job_id=f"j-{i:020d}",
        tenant=tenant,
        client_job_id=f"client-job-{i}",
        name=f"training run {i}",
        priority=("standard", "preemptible", "critical")[i % 3],
        models=("B200",),
        total=total,
        width=width,
        runtime_s=3600,
        allowed_sites=frozenset(),
        jurisdictions=(),
        key_id="ds-key",
        isolation="dedicated-node",
        seq=0,
        submitted_at=NOW,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--queued", type=int, default=100_000)
    args = parser.parse_args()
    gc.collect()
    before = rss_mib()
    engine = Engine()
    engine.index.upsert_site("fra1", "EU/DE")
    for r in range(args.nodes // 16):
        engine.index.upsert_rack(f"r{r:04d}", "fra1", 64)
        for n in range(16):
            engine.index.upsert_node(
                f"r{r:04d}-n{n:02d}",
                site_id="fra1",
                rack_id=f"r{r:04d}",
                model="B200",
                capacity=8,
                state="available",
                dedicated=None,
            )
    for t in range(16):
        engine.set_quota(f"tenant-{t}", "*", 10**9)
    engine.pass_pending = False
    i = 0
    while sum(engine.usage.values()) < args.nodes * 8 * 0.8:
        engine.submit(job(i, 8, 8, f"tenant-{i % 16}"), NOW)
        i += 1
    running = len(engine.jobs)
    for _ in range(args.queued):
        engine.submit(
            job(i, 64, 8, f"tenant-{i % 16}"), NOW
        )  # 8-node gangs: too big for what is left
        i += 1
    gc.collect()
    after = rss_mib()
    engine.pass_pending = True
    started = time.perf_counter()
    engine.schedule_pass(NOW)
    pass_s = time.perf_counter() - started
    print(
        f"engine: {len(engine.index.nodes)} nodes x 8, {running} jobs running, {engine.queued} queued"
    )
    print(
        f"RSS: {before:.0f} MiB with the service's modules imported, {after:.0f} MiB with that state "
        f"(+{after - before:.0f} MiB)   (target: <= 300 MB)"
    )
    print(f"one scheduling pass over the {engine.queued} queued jobs: {pass_s:.2f} s")


if __name__ == "__main__":
    main()
