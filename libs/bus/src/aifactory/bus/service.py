"""The runtime of one aifactory service: everything between ``main()`` and handlers.

A service declares what it consumes and which commands it serves, then runs::

    service = Service("inventory", bus_settings=BusSettings.from_env(),
                      store=Store(StoreSettings.from_env("inventory").url))
    service.consume(HEALTH_VERDICTS, handlers={NodeHealthChanged: on_verdict})
    service.command(RegisterNode, register_node)
    await service.run()          # until SIGINT/SIGTERM

``start`` creates the database tables, connects to NATS (a clear error when it is
unreachable), provisions the factory streams and the service's durable consumers
(re-applying changed consumer settings), subscribes the command endpoints, starts
the outbox relay and one task per consumer, and the ``/metrics`` endpoint
when a port is given. From the moment it is connected the service answers the
``service_status`` query (``aifactory.bus.status``); it reports ready at the end of
``start`` or, with ``ready_on_start=False``, when its owner calls ``mark_ready()``
after starting its own work. ``stop`` cancels the tasks, drains connections and disposes of
the database engine. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from aifactory.bus.connection import Bus
from aifactory.bus.consumer import BatchHandler, EventConsumer, EventHandler
from aifactory.bus.rpc import Authorize, CommandEndpoints, RequestContext
from aifactory.bus.settings import BusSettings
from aifactory.bus.status import StatusEndpoint
from aifactory.bus.topology import ConsumerSpec
from aifactory.contracts.base import Contract
from aifactory.observability.metrics import MetricsServer, ServiceMetrics, start_metrics_server
from aifactory.store.relay import OutboxRelay
from aifactory.store.store import Store
from aifactory.store.uow import UnitOfWork

log = structlog.get_logger(__name__)
C = TypeVar("C", bound=Contract)


@dataclass
class _ConsumerBinding:
    spec: ConsumerSpec
    handlers: Mapping[type[Contract], EventHandler] | None
    batch_handler: BatchHandler | None
    options: dict[str, Any] = field(default_factory=dict)


class Service:
    """Composes store, bus, consumers, command endpoints, relay and metrics."""

    def __init__(
        self,
        name: str,
        *,
        bus_settings: BusSettings,
        store: Store,
        metrics_port: int = 0,
        authorize: Authorize | None = None,
        ready_on_start: bool = True,
    ) -> None:
        self.name = name
        self.ready_on_start = ready_on_start
        self.status: StatusEndpoint | None = None
        self.bus_settings = bus_settings
        self.store = store
        self.metrics = ServiceMetrics(name)
        self.metrics_port = metrics_port
        self.authorize = authorize
        self.bus = Bus(bus_settings, service=name)
        self.consumers: list[EventConsumer] = []
        self.relay: OutboxRelay | None = None
        self._bindings: list[_ConsumerBinding] = []
        self._commands: list[tuple[type[Contract], Callable[..., Awaitable[Contract]]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._endpoints: CommandEndpoints | None = None
        self._metrics_server: MetricsServer | None = None

    def consume(
        self,
        spec: ConsumerSpec,
        *,
        handlers: Mapping[type[Contract], EventHandler] | None = None,
        batch_handler: BatchHandler | None = None,
        **options: Any,
    ) -> None:
        """Apply events from the durable consumer ``spec`` with these handlers."""
        self._bindings.append(_ConsumerBinding(spec, handlers, batch_handler, options))

    def command(
        self,
        command_type: type[C],
        handler: Callable[[C, UnitOfWork, RequestContext], Awaitable[Contract]],
    ) -> None:
        """Serve a command or query with ``handler``."""
        self._commands.append((command_type, handler))

    def _wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    async def start(self) -> None:
        """Bring the service up (see module docstring)."""
        source = f"/aifactory/{self.name}"
        self.store.source = source
        started_at = dt.datetime.now(dt.UTC)
        await self.store.create_all()
        await self.bus.connect()
        self.status = StatusEndpoint(
            self.bus.nc,
            service=self.name,
            namespace=self.bus.namespace,
            started_at=started_at,
            describe=self._describe,
        )
        await self.status.start()
        report = await self.bus.provision([b.spec for b in self._bindings])
        log.info(
            "bus_provisioned",
            created=report.created_streams,
            updated=report.updated_streams,
            consumers=report.consumers,
        )
        published = self.metrics.published("outbox")
        self.relay = self.bus.relay(self.store, on_published=published.inc)
        self._endpoints = endpoints = CommandEndpoints(
            self.bus.nc,
            self.store,
            service=self.name,
            namespace=self.bus.namespace,
            authorize=self.authorize,
            on_commit=self._wake_relay,
            observe=lambda handler, seconds, _failed: self.metrics.handler_seconds(handler).observe(
                seconds
            ),
        )
        for command_type, handler in self._commands:
            await endpoints.register(command_type, handler)
        # A round trip guarantees the server has registered our subscriptions before we
        # report ready (otherwise an early request meets no responders).
        await self.bus.nc.flush(timeout=5)
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        for binding in self._bindings:
            consumer = self.bus.consumer(
                binding.spec,
                self.store,
                handlers=binding.handlers,
                batch_handler=binding.batch_handler,
                after_commit=self._wake_relay,
                metrics=self.metrics,
                **binding.options,
            )
            self.consumers.append(consumer)
            ready = asyncio.Event()
            self._tasks.append(
                asyncio.create_task(consumer.run(ready=ready), name=f"{self.name}-{consumer.name}")
            )
            await asyncio.wait_for(ready.wait(), timeout=10)
        self._metrics_server = start_metrics_server(self.metrics, self.metrics_port)
        log.info(
            "service_started",
            service=self.name,
            commands=endpoints.subjects,
            consumers=[c.name for c in self.consumers],
            metrics=self._metrics_server.url if self._metrics_server else None,
        )
        if self.ready_on_start:
            self.mark_ready()

    def mark_ready(self) -> None:
        """Report ready from now on (call after ``start`` with ``ready_on_start=False``)."""
        if self.status is None:
            raise RuntimeError(f"{self.name}: mark_ready() before start()")
        self.status.mark_ready()

    def _describe(self) -> tuple[str, list[str], list[str]]:
        """Metrics URL, consumer names and command subjects, for the status reply."""
        metrics_url = ""
        if self._metrics_server is not None:
            metrics_url = f"http://127.0.0.1:{self._metrics_server.port}/metrics"
        commands = list(self._endpoints.subjects) if self._endpoints is not None else []
        return metrics_url, [c.name for c in self.consumers], commands

    async def stop(self) -> None:
        """Stop tasks, close connections and the database (idempotent)."""
        if self.status is not None:
            await self.status.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._endpoints is not None:
            await self._endpoints.close()
            self._endpoints = None
        await self.bus.close()
        await self.store.dispose()
        if self._metrics_server is not None:
            self._metrics_server.stop()
            self._metrics_server = None
        log.info("service_stopped", service=self.name)

    async def run(self) -> int:
        """Start, run until SIGINT or SIGTERM (or a task ends), stop; the exit status.

        0 after a signal; 1 when one of the service's tasks ended on its own (a
        consumer, the relay: logged as ``service_task_died``), so a supervisor or
        container runtime sees the failure and restarts the service.
        """
        await self.start()
        try:
            return await serve_until_signal(self._tasks, service=self.name)
        finally:
            await self.stop()


async def serve_until_signal(tasks: Sequence[asyncio.Task[Any]], *, service: str) -> int:
    """Wait for SIGINT/SIGTERM (0) or for the first of ``tasks`` to end (1, logged)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    waiter = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if waiter in done:
        return 0
    for task in done:
        error = None if task.cancelled() else task.exception()
        log.error(
            "service_task_died",
            service=service,
            task=task.get_name(),
            error=repr(error) if error is not None else "ended without an error",
        )
    return 1
