"""Load for end-to-end tests: submissions, a deterministic workload side, operators, data users.

``Workload`` publishes ``job_submitted`` events at a steady rate (through JetStream, so
they wait there while the scheduler is down) and plays the workload side: for every
placement of a job it submitted it reports ``job_started`` and, ``hold_s`` of real
time later, ``job_finished``. The reported times are not the wall clock: job *i* runs
from ``EPOCH + i h`` for ``(i mod 4 + 1) x 15 min``, so every run of the same workload
reports the same GPU-seconds, whatever crashed in between (the basis of comparing
invoice totals between runs). ``NodeOperator`` cordons and uncordons a node in a loop
(inventory's load); ``DataKeyUser`` asks the keys service for data keys in a loop (the
keys service's load). Both retry while their service is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

from aifactory.bus.publisher import EventPublisher
from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.contracts.envelope import Envelope
from aifactory.contracts.inventory.v1 import CordonNode, NodeStateResult, UncordonNode
from aifactory.contracts.jobs.v1 import (
    JobFinished,
    JobPlaced,
    JobSpec,
    JobStarted,
    JobSubmitted,
)
from aifactory.contracts.keys.v1 import Caller, DataKey, GenerateDataKey
from aifactory.scheduling.domain import job_id_for
from aifactory.store.events import NewEvent

from ._factory import GPUS_PER_NODE, SITE, TENANTS, job_spec

EPOCH = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
"""Reported run times start here (the invoice period of the tests covers November)."""


def run_window(index: int) -> tuple[dt.datetime, dt.datetime]:
    """When job ``index`` reportedly started and finished (the same in every run)."""
    started = EPOCH + dt.timedelta(hours=index)
    return started, started + dt.timedelta(minutes=15 * (index % 4 + 1))


@dataclass
class Workload:
    """Submits jobs and reports them started and finished, deterministically."""

    nc: Client
    namespace: Namespace
    hold_s: float = 0.4
    dataset_key_id: str | None = None
    """Jobs of ``acme`` name this dataset key (the scheduler then asks the keys service)."""
    specs: dict[str, JobSpec] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)
    reported: dict[tuple[str, int], str] = field(default_factory=dict)
    """(job id, attempt) -> "started" / "finished"."""
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.publisher = EventPublisher(
            self.nc.jetstream(), source="/e2e/workload", namespace=self.namespace
        )

    def spec(self, index: int) -> JobSpec:
        """Job ``index`` of the load: tenants alternate, one node each."""
        tenant = TENANTS[index % len(TENANTS)]
        return job_spec(
            f"load-{index:04d}",
            tenant=tenant,
            accelerators=GPUS_PER_NODE,
            dataset_key_id=self.dataset_key_id if tenant == "acme" else None,
        )

    def track(self, spec: JobSpec, index: int) -> str:
        """Report this job's placements from now on; its job id."""
        job_id = job_id_for(spec.tenant, spec.client_job_id)
        self.specs[job_id] = spec
        self.index[job_id] = index
        return job_id

    async def submit(self, count: int, *, rate: float, first: int = 0) -> None:
        """Publish ``count`` submissions, ``rate`` per second."""
        for index in range(first, first + count):
            spec = self.spec(index)
            self.track(spec, index)
            await self.publisher.publish(NewEvent(JobSubmitted(job=spec), tenant=spec.tenant))
            await asyncio.sleep(1 / rate)

    async def resubmit(self, index: int) -> None:
        """Publish job ``index`` again (a new event id, the same client job id)."""
        spec = self.spec(index)
        await self.publisher.publish(NewEvent(JobSubmitted(job=spec), tenant=spec.tenant))

    @property
    def finished(self) -> int:
        """Placements reported finished so far."""
        return sum(1 for state in self.reported.values() if state == "finished")

    def on_event(self, envelope: Envelope[Any]) -> None:
        """A job event arrived: a new placement of a tracked job starts running."""
        placed = envelope.data
        if not isinstance(placed, JobPlaced) or placed.job_id not in self.index:
            return
        key = (placed.job_id, placed.attempt)
        if key in self.reported:  # the same event seen twice (core delivery of a re-send)
            return
        self.reported[key] = "placed"
        task = asyncio.create_task(self._run(placed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, placed: JobPlaced) -> None:
        started, finished = run_window(self.index[placed.job_id])
        job_id, tenant, attempt = placed.job_id, placed.tenant, placed.attempt
        await self.publisher.publish(
            NewEvent(
                JobStarted(job_id=job_id, tenant=tenant, attempt=attempt, started_at=started),
                tenant=tenant,
            )
        )
        self.reported[job_id, attempt] = "started"
        await asyncio.sleep(self.hold_s)  # the job "runs"
        await self.publisher.publish(
            NewEvent(
                JobFinished(job_id=job_id, tenant=tenant, attempt=attempt, finished_at=finished),
                tenant=tenant,
            )
        )
        self.reported[placed.job_id, placed.attempt] = "finished"

    async def close(self) -> None:
        """Wait for reports still in flight."""
        if self._tasks:
            await asyncio.gather(*self._tasks)


async def _retrying(call: Callable[[], Any], stop: asyncio.Event) -> Any:
    """Call until it gets an answer (the service may be down), or ``stop`` is set."""
    while not stop.is_set():
        try:
            return await call()
        except ServiceUnavailable:
            continue
    return None


@dataclass
class NodeOperator:
    """Cordons and uncordons one node in a loop; leaves it uncordoned."""

    nc: Client
    namespace: Namespace
    node_id: str
    pause_s: float = 0.3
    commands: int = 0
    changes: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: cordon, pause, uncordon, pause; then make sure it is uncordoned."""
        while not stop.is_set():
            for command in (CordonNode, UncordonNode):
                await self._send(command, stop)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.pause_s)
        never = asyncio.Event()
        await self._send(UncordonNode, never)

    async def _send(self, command: type[CordonNode | UncordonNode], stop: asyncio.Event) -> None:
        message = command(node_id=self.node_id, reason="e2e operator", actor="e2e")
        result = await _retrying(
            lambda: request(self.nc, message, NodeStateResult, namespace=self.namespace, timeout=5),
            stop,
        )
        if result is not None:
            self.commands += 1
            self.changes += int(result.changed)


@dataclass
class DataKeyUser:
    """Asks the keys service for data keys of one tenant key in a loop (as the tenant, at fra1)."""

    nc: Client
    namespace: Namespace
    tenant: str
    key_id: str
    pause_s: float = 0.1
    answered: int = 0
    refused: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: one ``generate_data_key``, a pause, again."""
        caller = Caller(principal=f"tenant:{self.tenant}", site=SITE)
        message = GenerateDataKey(tenant=self.tenant, key_id=self.key_id, caller=caller)
        while not stop.is_set():
            try:
                reply = await _retrying(
                    lambda: request(self.nc, message, DataKey, namespace=self.namespace, timeout=5),
                    stop,
                )
            except CommandFailed:
                self.refused += 1
            else:
                self.answered += int(reply is not None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.pause_s)
