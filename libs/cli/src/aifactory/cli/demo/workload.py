"""The demo's workload: a job generator and the workload reporter, with latency figures.

``Workload.generate`` submits jobs (``SubmitJob`` requests, as each tenant) at a
target rate: small gangs (1 to 8 accelerators on one node) of the tenant's priority
mix, within its residency, protected by its ``datasets`` key. ``Workload`` also plays
the workload side of the factory: it follows the scheduler's job events on NATS and,
for each ``job_placed``, publishes ``job_started`` and, after the job's (short)
runtime, ``job_finished`` - through the bus kit's publisher, so CloudEvents headers
and JetStream de-duplication are as any reporter's. A job that loses its placement
(``job_requeued``, ``job_preempted``) stops running until it is placed again.

Latency is measured per job from just before its submit request to the arrival of
its first ``job_placed`` event (the event can arrive before the request's reply; both
orders are handled). Jobs that are never placed (e.g. a revoked key) have no latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import msgspec
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from aifactory.bus.publisher import EventPublisher
from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.cli.demo.tenants import KEY_ID, TENANTS, DemoTenant
from aifactory.contracts.jobs.v1 import (
    JobAcceptance,
    JobFinished,
    JobPlaced,
    JobPreempted,
    JobQueued,
    JobRequeued,
    JobSpec,
    JobStarted,
    PriorityClass,
    SubmitJob,
)
from aifactory.contracts.registry import spec_of
from aifactory.store.events import NewEvent

log = structlog.get_logger(__name__)

SOURCE = "/aifactory/demo/workload"
GANG_SIZES = ((1, 0.5), (2, 0.3), (4, 0.15), (8, 0.05))
MODELS = ["H200", "B200"]
MAX_IN_FLIGHT_SUBMITS = 64
SUBMIT_TIMEOUT_S = 10.0
MIN_RATE_WINDOW_S = 0.5
"""Below this much generator time a rate is not worth showing."""

_placed = msgspec.json.Decoder(JobPlaced)
_requeued = msgspec.json.Decoder(JobRequeued)
_preempted = msgspec.json.Decoder(JobPreempted)
_queued = msgspec.json.Decoder(JobQueued)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) of ``values`` by nearest rank; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


@dataclass
class Running:
    """A placed job the reporter runs."""

    tenant: str
    attempt: int
    site_id: str
    model: str
    accelerators: int
    task: asyncio.Task[None] | None = None


@dataclass
class WorkloadStats:
    """What the workload did and saw."""

    submitted: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    placed_first: int = 0
    placements: int = 0
    started: int = 0
    finished: int = 0
    requeued: Counter[str] = field(default_factory=Counter)
    preempted: int = 0
    queued: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    direct_latencies_ms: list[float] = field(default_factory=list)
    """Latencies of the jobs placed without ever waiting in the queue."""
    generating_since: float | None = None
    generating_until: float | None = None
    submitted_by_tenant: Counter[str] = field(default_factory=Counter)

    def generating_s(self, now: float | None = None) -> float:
        """Seconds the generator ran (so far)."""
        if self.generating_since is None:
            return 0.0
        end = self.generating_until or (now if now is not None else time.monotonic())
        return max(end - self.generating_since, 1e-9)

    def per_minute(self, count: int, now: float | None = None) -> float:
        """``count`` as a rate per minute of generator time."""
        seconds = self.generating_s(now)
        return count * 60.0 / seconds if seconds > MIN_RATE_WINDOW_S else 0.0

    def latency_ms(self, fraction: float) -> float:
        """Submit -> placed latency quantile in milliseconds."""
        return percentile(self.latencies_ms, fraction)

    def direct_latency_ms(self, fraction: float) -> float:
        """The same, for jobs that never waited in the queue."""
        return percentile(self.direct_latencies_ms, fraction)

    @property
    def mean_latency_ms(self) -> float:
        """Mean submit -> placed latency in milliseconds."""
        return statistics.fmean(self.latencies_ms) if self.latencies_ms else 0.0


class Workload:
    """Job generator and workload reporter over one NATS connection."""

    def __init__(
        self,
        nc: Client,
        namespace: Namespace,
        *,
        rate_per_s: float,
        runtime_s: tuple[float, float] = (0.3, 1.5),
        tenants: tuple[DemoTenant, ...] = TENANTS,
        run_id: str = "demo",
        seed: int = 0,
    ) -> None:
        self.nc = nc
        self.namespace = namespace
        self.rate_per_s = rate_per_s
        self.runtime_s = runtime_s
        self.tenants = tenants
        self.run_id = run_id
        self.stats = WorkloadStats()
        self.running: dict[str, Running] = {}
        self._rng = random.Random(seed)  # noqa: S311 - a workload mix, not a secret
        self._publisher = EventPublisher(nc.jetstream(), source=SOURCE, namespace=namespace)
        self._submitted_at: dict[str, float] = {}
        self._placed_early: dict[str, float] = {}
        self._waited: set[str] = set()
        self._subscription: Subscription | None = None
        self._submits: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT_SUBMITS)
        self._sequence = 0

    # ------------------------------------------------------------------ reporter

    async def start_reporting(self) -> None:
        """Follow the scheduler's job events from now on."""
        subject = self.namespace.subject("factory.jobs.v1.evt.>")
        self._subscription = await self.nc.subscribe(
            subject, cb=self._on_job_event, pending_msgs_limit=200_000
        )

    async def _on_job_event(self, msg: Msg) -> None:
        name = msg.subject.rsplit(".", 2)[-2]
        try:
            if name == "job_placed":
                self._on_placed(_placed.decode(msg.data))
            elif name == "job_requeued":
                requeued = _requeued.decode(msg.data)
                self.stats.requeued[requeued.reason] += 1
                self._stop_running(requeued.job_id, requeued.attempt)
            elif name == "job_preempted":
                preempted = _preempted.decode(msg.data)
                self.stats.preempted += 1
                self._stop_running(preempted.job_id, preempted.attempt)
            elif name == "job_queued":
                queued = _queued.decode(msg.data)
                self.stats.queued[queued.reason] += 1
                self._waited.add(queued.job_id)
        except msgspec.DecodeError:
            log.warning("demo_undecodable_job_event", subject=msg.subject)

    def _on_placed(self, placed: JobPlaced) -> None:
        arrived = time.monotonic()
        self.stats.placements += 1
        if placed.attempt == 1:
            self.stats.placed_first += 1
            submitted = self._submitted_at.pop(placed.job_id, None)
            if submitted is not None:
                self._record_latency(placed.job_id, (arrived - submitted) * 1000)
            else:
                self._placed_early[placed.job_id] = arrived
        previous = self.running.pop(placed.job_id, None)
        if previous is not None and previous.task is not None:
            previous.task.cancel()
        job = Running(
            tenant=placed.tenant,
            attempt=placed.attempt,
            site_id=placed.site_id,
            model=placed.model,
            accelerators=sum(len(a.accelerator_indices) for a in placed.allocations),
        )
        self.running[placed.job_id] = job
        runtime = self._rng.uniform(*self.runtime_s)
        job.task = asyncio.create_task(self._run(placed.job_id, job, runtime))

    def _record_latency(self, job_id: str, milliseconds: float) -> None:
        self.stats.latencies_ms.append(milliseconds)
        if job_id not in self._waited:
            self.stats.direct_latencies_ms.append(milliseconds)
        self._waited.discard(job_id)

    def _stop_running(self, job_id: str, attempt: int) -> None:
        job = self.running.get(job_id)
        if job is not None and job.attempt == attempt:
            del self.running[job_id]
            if job.task is not None:
                job.task.cancel()

    async def _report(self, event: JobStarted | JobFinished, tenant: str) -> None:
        try:
            await self._publisher.publish(NewEvent(event, tenant=tenant))
        except Exception:  # a lost report shows as a job that runs on; keep going
            log.warning("demo_report_not_published", type=spec_of(event).name, exc_info=True)

    async def _run(self, job_id: str, job: Running, runtime_s: float) -> None:
        await self._report(
            JobStarted(job_id=job_id, tenant=job.tenant, attempt=job.attempt, started_at=_now()),
            job.tenant,
        )
        self.stats.started += 1
        await asyncio.sleep(runtime_s)
        await self._finish(job_id, job)

    async def _finish(self, job_id: str, job: Running) -> None:
        if self.running.get(job_id) is not job:
            return
        del self.running[job_id]
        await self._report(
            JobFinished(job_id=job_id, tenant=job.tenant, attempt=job.attempt, finished_at=_now()),
            job.tenant,
        )
        self.stats.finished += 1

    def in_use(self) -> Counter[tuple[str, str]]:
        """Accelerators held by running jobs, per (site, model)."""
        held: Counter[tuple[str, str]] = Counter()
        for job in self.running.values():
            held[job.site_id, job.model] += job.accelerators
        return held

    async def drain(self, timeout_s: float) -> None:
        """Let running jobs finish for up to ``timeout_s``, then finish the rest now."""
        running = [job.task for job in self.running.values() if job.task is not None]
        if running:
            await asyncio.wait(running, timeout=timeout_s)
        for job_id, job in list(self.running.items()):
            if job.task is not None:
                job.task.cancel()
            await self._finish(job_id, job)

    async def close(self) -> None:
        """Stop following events and cancel what is still pending."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        tasks = [job.task for job in self.running.values() if job.task is not None]
        tasks += list(self._submits)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ generator

    def _priority(self, tenant: DemoTenant) -> PriorityClass:
        classes = [priority for priority, _ in tenant.priorities]
        return self._rng.choices(classes, weights=[share for _, share in tenant.priorities])[0]

    def _gang_size(self) -> int:
        sizes = [size for size, _ in GANG_SIZES]
        return self._rng.choices(sizes, weights=[share for _, share in GANG_SIZES])[0]

    def next_job(self) -> JobSpec:
        """The next job of the mix."""
        self._sequence += 1
        tenant = self._rng.choices(self.tenants, weights=[t.share for t in self.tenants])[0]
        priority = self._priority(tenant)
        accelerators = self._gang_size()
        models = MODELS if self._rng.random() < 0.5 else MODELS[::-1]
        return JobSpec(
            tenant=tenant.tenant,
            client_job_id=f"{self.run_id}-{self._sequence:06d}",
            name=f"{priority}-{accelerators}gpu-{self._sequence}",
            models=list(models),
            accelerators=accelerators,
            accelerators_per_node=accelerators,
            priority=priority,
            expected_runtime_s=2,
            allowed_jurisdictions=list(tenant.residency),
            dataset_key_id=KEY_ID,
            labels={"source": "aifactory-demo"},
        )

    async def _submit(self, spec: JobSpec) -> None:
        started = time.monotonic()
        try:
            accepted = await request(
                self.nc,
                SubmitJob(job=spec),
                JobAcceptance,
                namespace=self.namespace,
                tenant=spec.tenant,
                source=SOURCE,
                timeout=SUBMIT_TIMEOUT_S,
            )
        except CommandFailed as error:
            self.stats.refused[error.error.details.get("reason", error.error.code)] += 1
            return
        except ServiceUnavailable:
            self.stats.refused["unavailable"] += 1
            return
        finally:
            self._slots.release()
        self.stats.accepted += 1
        placed = self._placed_early.pop(accepted.job_id, None)
        if placed is not None:
            self._record_latency(accepted.job_id, (placed - started) * 1000)
        elif accepted.state in ("queued", "placed", "running"):
            self._submitted_at[accepted.job_id] = started

    async def generate(self, stop: asyncio.Event) -> None:
        """Submit jobs at ``rate_per_s`` until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate_per_s
        self.stats.generating_since = time.monotonic()
        next_at = loop.time()
        try:
            while not stop.is_set():
                await self._slots.acquire()
                spec = self.next_job()
                self.stats.submitted += 1
                self.stats.submitted_by_tenant[spec.tenant] += 1
                task = asyncio.create_task(self._submit(spec))
                self._submits.add(task)
                task.add_done_callback(self._submits.discard)
                next_at += interval
                delay = next_at - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                else:
                    next_at = loop.time()  # fell behind: do not burst to catch up
        finally:
            self.stats.generating_until = time.monotonic()
            if self._submits:
                await asyncio.wait(list(self._submits), timeout=SUBMIT_TIMEOUT_S)
