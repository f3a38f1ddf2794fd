"""Composition root of the health service: the only module that touches the bus.

``build_service(settings)`` wires the monitor, the telemetry ingest, the engine and
the handlers into a ``HealthService``: the kit's ``Service`` (inventory events from
the durable consumer ``health-inventory`` on ``FACTORY_INVENTORY``, the silence
commands and the queries, the outbox relay, metrics) plus a core-NATS subscription
to ``factory.health.v1.tlm.>`` whose callback only buffers, and the engine's tick
task. ``start`` loads the persisted state before anything is consumed; ``run``
serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from aifactory.bus.rpc import CommandRejected, RequestContext
from aifactory.bus.service import Service, serve_until_signal
from aifactory.bus.topology import ConsumerSpec
from aifactory.contracts.base import Contract
from aifactory.contracts.health.v1 import (
    LiftSilence,
    ListAlerts,
    ListNodeHealth,
    NodeHeartbeat,
    NodeTelemetry,
    SilenceNode,
)
from aifactory.contracts.inventory.v1 import NodeRegistered, NodeStateChanged, NodeUpdated
from aifactory.contracts.registry import spec_of
from aifactory.health.config import SERVICE, HealthSettings
from aifactory.health.engine import HealthEngine
from aifactory.health.handlers import HealthError, HealthHandlers
from aifactory.health.ingest import TELEMETRY_FILTER, TelemetryIngest
from aifactory.health.monitor import HealthMonitor
from aifactory.store.store import Store
from aifactory.store.uow import UnitOfWork

log = structlog.get_logger(__name__)
C = TypeVar("C", bound=Contract)
R = TypeVar("R", bound=Contract)

INVENTORY_EVENTS = ConsumerSpec(
    stream="FACTORY_INVENTORY",
    durable="health-inventory",
    filter_subjects=tuple(
        spec_of(t).subject_filter for t in (NodeRegistered, NodeUpdated, NodeStateChanged)
    ),
    description="health: the nodes to expect, from inventory",
)


def _rejecting(
    handler: Callable[[C, UnitOfWork], Awaitable[R]],
) -> Callable[[C, UnitOfWork, RequestContext], Awaitable[R]]:
    """Adapt a use case to the bus: ``HealthError`` -> ``CommandRejected`` (typed reply)."""

    async def endpoint(command: C, uow: UnitOfWork, _ctx: RequestContext) -> R:
        try:
            return await handler(command, uow)
        except HealthError as error:
            raise CommandRejected(error.code, error.message, error.details) from None

    return endpoint


async def authorize(ctx: RequestContext) -> None:
    """Tenants may not silence alerts (a request carrying ``ce-tenant`` is a tenant's)."""
    if ctx.spec.kind == "cmd" and ctx.tenant:
        raise CommandRejected(
            "unauthorized",
            f"tenant {ctx.tenant} may not {ctx.spec.name.replace('_', ' ')}; "
            "ask a factory operator",
            {"tenant": ctx.tenant, "command": ctx.spec.name},
        )


class HealthService:
    """The kit's ``Service`` plus the telemetry subscription and the engine's tick."""

    def __init__(self, settings: HealthSettings) -> None:
        self.settings = settings
        self.store = Store(settings.database_url)
        self.service = Service(
            SERVICE,
            bus_settings=settings.bus,
            store=self.store,
            metrics_port=settings.metrics_port,
            authorize=authorize,
            ready_on_start=False,
        )
        namespace = settings.bus.namespace
        self.monitor = HealthMonitor(settings.rules, started=0.0)
        self.ingest = TelemetryIngest(
            self.monitor,
            telemetry_subject=namespace.subject(spec_of(NodeTelemetry).subject()),
            heartbeat_subject=namespace.subject(spec_of(NodeHeartbeat).subject()),
            max_buffer=settings.max_buffer,
        )
        self.engine = HealthEngine(
            self.monitor,
            self.ingest,
            self.store,
            tick_s=settings.tick_s,
            on_commit=self._wake_relay,
        )
        self.handlers = handlers = HealthHandlers(self.monitor, self.ingest)
        self.service.consume(
            INVENTORY_EVENTS,
            handlers={
                NodeRegistered: handlers.on_node_registered,
                NodeUpdated: handlers.on_node_updated,
                NodeStateChanged: handlers.on_node_state_changed,
            },
        )
        self.service.command(SilenceNode, _rejecting(handlers.silence_node))
        self.service.command(LiftSilence, _rejecting(handlers.lift_silence))
        self.service.command(ListNodeHealth, _rejecting(handlers.list_node_health))
        self.service.command(ListAlerts, _rejecting(handlers.list_alerts))
        self._subscription: Subscription | None = None
        self._engine_task: asyncio.Task[None] | None = None

    def _wake_relay(self) -> None:
        if self.service.relay is not None:
            self.service.relay.wake()

    async def start(self) -> None:
        """Load state, start the kit's service, subscribe to telemetry, start ticking."""
        await self.store.create_all()
        await self.engine.load()
        await self.service.start()
        receive = self.ingest.receive

        async def on_telemetry(msg: Msg) -> None:
            receive(msg.subject, msg.data)

        self._subscription = await self.service.bus.nc.subscribe(
            self.settings.bus.namespace.subject(TELEMETRY_FILTER),
            cb=on_telemetry,
            pending_msgs_limit=100_000,
            pending_bytes_limit=64 * 1024 * 1024,
        )
        await self.service.bus.nc.flush(timeout=5)
        self._engine_task = asyncio.create_task(self.engine.run(), name="health-engine")
        self.service.mark_ready()
        log.info("health_started", nodes=len(self.monitor.nodes), tick_s=self.engine.tick_s)

    async def stop(self) -> None:
        """Stop ticking and consuming; write what is pending; close (idempotent)."""
        if self._engine_task is not None:
            self.engine.stop()
            try:
                await asyncio.wait_for(self._engine_task, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("health_engine_stop_timed_out")
            except Exception:
                log.exception("health_engine_failed")
            self._engine_task = None
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None
        await self.service.stop()

    async def run(self) -> int:
        """Start, serve until SIGINT/SIGTERM (0) or until the engine or a kit task ends (1)."""
        await self.start()
        assert self._engine_task is not None
        try:
            return await serve_until_signal(
                [self._engine_task, *self.service._tasks], service=SERVICE
            )
        finally:
            await self.stop()


def build_service(settings: HealthSettings) -> HealthService:
    """The health service, wired and not yet started."""
    return HealthService(settings)
