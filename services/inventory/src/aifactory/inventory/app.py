"""Composition root of the inventory service: the only module that touches the bus.

``build_service(settings)`` wires the handlers to their commands and queries, the
health-verdict consumer (durable ``inventory-verdicts`` on ``FACTORY_HEALTH``) and
the authorisation rule, and returns a ``Service`` ready to ``start()``/``run()``.
Domain refusals (``InventoryError``) become typed error replies here, with their
code and details; nothing connects until the service starts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aifactory.bus.rpc import CommandRejected, RequestContext
from aifactory.bus.service import Service
from aifactory.bus.topology import ConsumerSpec
from aifactory.contracts.base import Contract
from aifactory.contracts.health.v1 import NodeHealthChanged
from aifactory.contracts.inventory.v1 import (
    CordonNode,
    Dedicate,
    DrainNode,
    ExportFactory,
    GetCapacity,
    GetNode,
    ImportFactory,
    ListNodes,
    NodeState,
    NodeStateCommand,
    NodeStateResult,
    RegisterNode,
    RetireNode,
    StartNodeMaintenance,
    UncordonNode,
    Undedicate,
    UpdateNode,
)
from aifactory.contracts.registry import spec_of
from aifactory.inventory import queries
from aifactory.inventory.config import SERVICE, InventorySettings
from aifactory.inventory.errors import InventoryError
from aifactory.inventory.handlers import InventoryHandlers
from aifactory.store.store import Store
from aifactory.store.uow import UnitOfWork

C = TypeVar("C", bound=Contract)
R = TypeVar("R", bound=Contract)

HEALTH_VERDICTS = ConsumerSpec(
    stream="FACTORY_HEALTH",
    durable="inventory-verdicts",
    filter_subjects=(spec_of(NodeHealthChanged).subject_filter,),
    description="inventory: node health verdicts -> failed / returned nodes",
)

STATE_COMMANDS: dict[type[NodeStateCommand], NodeState] = {
    CordonNode: "cordoned",
    DrainNode: "draining",
    UncordonNode: "available",
    StartNodeMaintenance: "maintenance",
    RetireNode: "retired",
}


def _rejecting(
    handler: Callable[[C, UnitOfWork], Awaitable[R]],
) -> Callable[[C, UnitOfWork, RequestContext], Awaitable[R]]:
    """Adapt a use case to the bus: ``InventoryError`` -> ``CommandRejected`` (typed reply)."""

    async def endpoint(command: C, uow: UnitOfWork, _ctx: RequestContext) -> R:
        try:
            return await handler(command, uow)
        except InventoryError as exc:
            raise CommandRejected(exc.code, exc.message, exc.details) from None

    return endpoint


def _state_command(
    handlers: InventoryHandlers, target: NodeState
) -> Callable[[NodeStateCommand, UnitOfWork], Awaitable[NodeStateResult]]:
    async def change(command: NodeStateCommand, uow: UnitOfWork) -> NodeStateResult:
        return await handlers.change_state(
            command.node_id, target, command.reason, command.actor, uow
        )

    return change


async def authorize(ctx: RequestContext) -> None:
    """Tenants may query the inventory; only operators and services may change it.

    A request carrying a tenant (``ce-tenant``) is a tenant's: its commands are refused.
    """
    if ctx.spec.kind == "cmd" and ctx.tenant:
        raise CommandRejected(
            "unauthorized",
            f"tenant {ctx.tenant} may not change the inventory ({ctx.spec.name}); "
            "ask a factory operator",
            {"tenant": ctx.tenant, "command": ctx.spec.name},
        )


def build_service(settings: InventorySettings) -> Service:
    """The inventory service, wired and not yet started."""
    service = Service(
        SERVICE,
        bus_settings=settings.bus,
        store=Store(settings.database_url),
        metrics_port=settings.metrics_port,
        authorize=authorize,
    )
    handlers = InventoryHandlers(settings.policy)
    service.consume(HEALTH_VERDICTS, handlers={NodeHealthChanged: handlers.on_health_verdict})
    service.command(RegisterNode, _rejecting(handlers.register_node))
    service.command(UpdateNode, _rejecting(handlers.update_node))
    for command_type, target in STATE_COMMANDS.items():
        service.command(command_type, _rejecting(_state_command(handlers, target)))
    service.command(Dedicate, _rejecting(handlers.dedicate))
    service.command(Undedicate, _rejecting(handlers.undedicate))
    service.command(ImportFactory, _rejecting(handlers.import_factory))
    service.command(GetNode, _rejecting(queries.get_node))
    service.command(ListNodes, _rejecting(queries.list_nodes))
    service.command(GetCapacity, _rejecting(queries.get_capacity))
    service.command(ExportFactory, _rejecting(queries.export_factory))
    return service
