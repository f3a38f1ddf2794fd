"""Inventory's use cases: commands that change the inventory, and health verdicts.

Each handler runs inside one unit of work: it reads and writes through the
repository and emits exactly one event per change through the outbox
(``uow.emit``); a request that changes nothing emits nothing. Refusals are
``InventoryError``s (the composition root turns them into typed error replies) and,
because they are raised before the transaction commits, nothing is partially
applied.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from aifactory.contracts.cloudevents import utcnow
from aifactory.contracts.envelope import Envelope
from aifactory.contracts.health.v1 import NodeHealthChanged
from aifactory.contracts.inventory.v1 import (
    Dedicate,
    DedicationChanged,
    DedicationResult,
    DedicationTarget,
    FieldChange,
    ImportFactory,
    ImportSummary,
    NodeRegistered,
    NodeRegistration,
    NodeState,
    NodeStateChanged,
    NodeStateResult,
    NodeUpdated,
    NodeUpdateResult,
    RackRegistered,
    RackUpdated,
    RegisterNode,
    SiteRegistered,
    SiteUpdated,
    Undedicate,
    UpdateNode,
)
from aifactory.inventory import states
from aifactory.inventory.description import parse_description
from aifactory.inventory.domain import (
    HARDWARE_FIELDS,
    ImportPlan,
    check_node_dedication,
    check_rack_dedication,
    diff_fields,
    node_view,
    plan_import,
    updated_spec,
)
from aifactory.inventory.errors import (
    HardwareConflict,
    InventoryError,
    UnknownReference,
)
from aifactory.inventory.store import (
    NODES,
    RACKS,
    SITES,
    InventoryRepository,
    hardware_values,
    node_of_row,
    node_values,
    spec_of_row,
)
from aifactory.store.uow import NewEvent, UnitOfWork

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How health verdicts move nodes (see services/inventory/README.md)."""

    auto_return: bool = False
    """A healthy verdict returns a node that a verdict (not an operator) marked failed."""
    unreachable_fails: bool = True
    """An ``unreachable`` verdict (lost heartbeats) marks the node failed, like ``failed``."""


async def _repo(uow: UnitOfWork) -> InventoryRepository:
    return InventoryRepository(await uow.session.connection())


def _state_event(row: RowMapping, to_state: NodeState, reason: str, actor: str) -> NewEvent:
    now = utcnow()
    return NewEvent(
        NodeStateChanged(
            node_id=row["node_id"],
            site_id=row["site_id"],
            rack_id=row["rack_id"],
            model=row["model"],
            accelerator_count=row["accelerator_count"],
            from_state=row["state"],
            to_state=to_state,
            reason=reason[:512],
            actor=actor[:128],
            tenant=row["tenant"],
            changed_at=now,
        ),
        tenant=row["tenant"],
        scope=row["site_id"],
        subject=row["node_id"],
    )


class InventoryHandlers:
    """The command and event handlers of the inventory service."""

    def __init__(self, policy: HealthPolicy | None = None) -> None:
        self.policy = policy or HealthPolicy()

    # ------------------------------------------------------------ node registration
    async def register_node(self, command: RegisterNode, uow: UnitOfWork) -> NodeRegistration:
        """Add a node; the same hardware again is a no-op, different hardware a conflict."""
        repo = await _repo(uow)
        spec = updated_spec(
            command.node, labels=command.node.labels, accelerators=command.node.accelerators
        )
        existing = await repo.node(spec.node_id)
        if existing is not None:
            current = spec_of_row(existing)
            changes = diff_fields(current, spec, ("site_id", *HARDWARE_FIELDS))
            if changes:
                fields = ", ".join(c.field for c in changes)
                raise HardwareConflict(
                    f"node {spec.node_id} is already registered with different {fields}; "
                    "use update_node to change it",
                    {"node_id": spec.node_id, "fields": fields},
                )
            return NodeRegistration(node=node_of_row(existing), created=False)
        rack = await repo.rack(spec.rack_id)
        if rack is None or rack["site_id"] != spec.site_id:
            if not await repo.site_exists(spec.site_id):
                raise UnknownReference(f"unknown site {spec.site_id!r}", {"site_id": spec.site_id})
            raise UnknownReference(
                f"unknown rack {spec.rack_id!r} at site {spec.site_id}", {"rack_id": spec.rack_id}
            )
        now = utcnow()
        rack_tenant = rack["tenant"]
        values = node_values(
            spec,
            state=command.initial_state,
            actor=command.actor,
            reason="registered",
            node_tenant=None,
            tenant=rack_tenant,
            now=now,
        )
        try:
            await repo.insert_many(NODES, [values])
        except IntegrityError:
            raise HardwareConflict(
                f"node {spec.node_id} was registered concurrently; retry", {"node_id": spec.node_id}
            ) from None
        node = node_view(
            spec,
            state=command.initial_state,
            state_reason="registered",
            state_actor=command.actor,
            state_changed_at=now,
            node_tenant=None,
            rack_tenant=rack_tenant,
            registered_at=now,
            updated_at=now,
        )
        uow.emit(
            NewEvent(
                NodeRegistered(node=node, actor=command.actor),
                tenant=node.tenant,
                scope=spec.site_id,
                subject=spec.node_id,
            )
        )
        log.info("node_registered", node_id=spec.node_id, site_id=spec.site_id, actor=command.actor)
        return NodeRegistration(node=node, created=True)

    async def update_node(self, command: UpdateNode, uow: UnitOfWork) -> NodeUpdateResult:
        """Change a node's hardware or rack; emits NodeUpdated with the changed fields."""
        repo = await _repo(uow)
        row = await repo.node(command.node_id, for_update=True)
        if row is None:
            raise UnknownReference(
                f"unknown node {command.node_id!r}", {"node_id": command.node_id}
            )
        current = spec_of_row(row)
        wanted = updated_spec(current, **{name: getattr(command, name) for name in HARDWARE_FIELDS})
        changes = diff_fields(current, wanted, HARDWARE_FIELDS)
        if not changes:
            return NodeUpdateResult(changes=[], node=node_of_row(row))
        values = hardware_values(wanted)
        if wanted.rack_id != current.rack_id:
            rack = await repo.rack(wanted.rack_id)
            if rack is None or rack["site_id"] != current.site_id:
                raise UnknownReference(
                    f"unknown rack {wanted.rack_id!r} at site {current.site_id} "
                    "(a node does not move between sites)",
                    {"rack_id": wanted.rack_id},
                )
            check_node_dedication(
                current.node_id, row["node_tenant"], rack["rack_id"], rack["tenant"]
            )
            tenant = row["node_tenant"] or rack["tenant"]
            values["tenant"] = tenant
        values["updated_at"] = utcnow()
        await repo.update_one(NODES, "node_id", current.node_id, values)
        updated = await repo.node(current.node_id)
        assert updated is not None
        node = node_of_row(updated)
        if node.tenant != row["tenant"]:
            changes = (
                *changes,
                FieldChange(field="tenant", before=row["tenant"], after=node.tenant),
            )
        uow.emit(
            NewEvent(
                NodeUpdated(
                    node_id=node.node_id,
                    site_id=node.site_id,
                    changes=list(changes),
                    node=node,
                    actor=command.actor,
                ),
                tenant=node.tenant,
                scope=node.site_id,
                subject=node.node_id,
            )
        )
        log.info("node_updated", node_id=node.node_id, fields=[c.field for c in changes])
        return NodeUpdateResult(changes=list(changes), node=node)

    # ------------------------------------------------------------ admin state
    async def change_state(
        self, node_id: str, target: NodeState, reason: str, actor: str, uow: UnitOfWork
    ) -> NodeStateResult:
        """Move a node to ``target`` if the state machine allows it; no-op if already there."""
        repo = await _repo(uow)
        row = await repo.node(node_id, for_update=True)
        if row is None:
            raise UnknownReference(f"unknown node {node_id!r}", {"node_id": node_id})
        current: NodeState = row["state"]
        if not states.operator_transition(node_id, current, target):
            return NodeStateResult(
                node_id=node_id, previous_state=current, state=current, changed=False
            )
        moved = await repo.set_state(
            node_id,
            expected=current,
            state=target,
            reason=reason,
            actor=actor,
            at=utcnow(),
            failed_by_health=False,
        )
        if not moved:
            raise InventoryError(f"node {node_id} changed state concurrently; retry")
        uow.emit(_state_event(row, target, reason, actor))
        log.info(
            "node_state_changed", node_id=node_id, from_state=current, to_state=target, actor=actor
        )
        return NodeStateResult(node_id=node_id, previous_state=current, state=target, changed=True)

    # ------------------------------------------------------------ dedication
    async def dedicate(self, command: Dedicate, uow: UnitOfWork) -> DedicationResult:
        """Dedicate a node or a rack to a tenant."""
        return await self._dedicate(
            target=command.target,
            target_id=command.target_id,
            tenant=command.tenant,
            reason=command.reason,
            actor=command.actor,
            uow=uow,
        )

    async def undedicate(self, command: Undedicate, uow: UnitOfWork) -> DedicationResult:
        """Return a node or a rack to the shared pool."""
        return await self._dedicate(
            target=command.target,
            target_id=command.target_id,
            tenant=None,
            reason=command.reason,
            actor=command.actor,
            uow=uow,
        )

    async def _dedicate(
        self,
        *,
        target: DedicationTarget,
        target_id: str,
        tenant: str | None,
        reason: str,
        actor: str,
        uow: UnitOfWork,
    ) -> DedicationResult:
        repo = await _repo(uow)
        now = utcnow()
        if target == "rack":
            rack = await repo.rack(target_id)
            if rack is None:
                raise UnknownReference(f"unknown rack {target_id!r}", {"rack_id": target_id})
            previous, site_id = rack["tenant"], rack["site_id"]
            members = await repo.rack_node_tenants(target_id)
            check_rack_dedication(target_id, tenant, {n: own for n, (own, _) in members.items()})
            affected = sorted(
                n for n, (own, eff) in members.items() if own is None and eff != tenant
            )
            if previous == tenant:
                return DedicationResult(
                    target="rack",
                    target_id=target_id,
                    previous_tenant=previous,
                    tenant=tenant,
                    changed=False,
                    node_ids=[],
                )
            await repo.set_rack_tenant(target_id, tenant, now)
        else:
            row = await repo.node(target_id, for_update=True)
            if row is None:
                raise UnknownReference(f"unknown node {target_id!r}", {"node_id": target_id})
            previous, site_id = row["node_tenant"], row["site_id"]
            rack = await repo.rack(row["rack_id"])
            assert rack is not None
            check_node_dedication(target_id, tenant, rack["rack_id"], rack["tenant"])
            if previous == tenant:
                return DedicationResult(
                    target="node",
                    target_id=target_id,
                    previous_tenant=previous,
                    tenant=tenant,
                    changed=False,
                    node_ids=[],
                )
            new_effective = tenant if tenant is not None else rack["tenant"]
            affected = [target_id] if new_effective != row["tenant"] else []
            await repo.set_node_tenant(target_id, tenant, rack["tenant"], now)
        uow.emit(
            NewEvent(
                DedicationChanged(
                    target=target,
                    target_id=target_id,
                    site_id=site_id,
                    previous_tenant=previous,
                    tenant=tenant,
                    node_ids=affected,
                    reason=reason,
                    actor=actor,
                ),
                tenant=tenant or previous,
                scope=site_id,
                subject=target_id,
            )
        )
        log.info(
            "dedication_changed",
            target=target,
            target_id=target_id,
            tenant=tenant,
            previous=previous,
        )
        return DedicationResult(
            target=target,
            target_id=target_id,
            previous_tenant=previous,
            tenant=tenant,
            changed=True,
            node_ids=affected,
        )

    # ------------------------------------------------------------ import
    async def import_factory(self, command: ImportFactory, uow: UnitOfWork) -> ImportSummary:
        """Apply a factory description atomically; a second identical import changes nothing."""
        description = parse_description(command.description_yaml)
        repo = await _repo(uow)
        plan = plan_import(description, await repo.snapshot())
        summary = ImportSummary(
            sites_created=len(plan.new_sites),
            sites_updated=len(plan.changed_sites),
            sites_unchanged=plan.unchanged_sites,
            racks_created=len(plan.new_racks),
            racks_updated=len(plan.changed_racks),
            racks_unchanged=plan.unchanged_racks,
            nodes_created=len(plan.new_nodes),
            nodes_updated=len(plan.changed_nodes),
            nodes_unchanged=plan.unchanged_nodes,
            dedications_changed=len(plan.dedications),
            events=0 if command.dry_run else plan.event_count,
            dry_run=command.dry_run,
        )
        if not command.dry_run and plan.event_count:
            try:
                await _apply_plan(plan, repo, uow, command.actor)
            except IntegrityError:
                raise HardwareConflict(
                    "the inventory changed while importing (a concurrent import?); retry"
                ) from None
        log.info(
            "factory_imported", actor=command.actor, events=summary.events, dry_run=command.dry_run
        )
        return summary

    # ------------------------------------------------------------ health verdicts
    def _verdict_target(
        self, verdict: NodeHealthChanged, state: NodeState, *, failed_by_health: bool
    ) -> NodeState | None:
        """Where a verdict moves a node in ``state`` (None: nowhere)."""
        fatal = verdict.verdict == "failed" or (
            verdict.verdict == "unreachable" and self.policy.unreachable_fails
        )
        if fatal and states.health_fails(state):
            return "failed"
        if verdict.verdict == "healthy" and states.health_returns(
            state, failed_by_health=failed_by_health, auto_return=self.policy.auto_return
        ):
            return "available"
        return None

    async def on_health_verdict(
        self, envelope: Envelope[NodeHealthChanged], uow: UnitOfWork
    ) -> list[NewEvent]:
        """Fatal (and, by policy, unreachable) verdicts fail the node; healthy may return it."""
        verdict = envelope.data
        repo = await _repo(uow)
        row = await repo.node(verdict.node_id, for_update=True)
        if row is None:
            log.warning(
                "verdict_for_unknown_node", node_id=verdict.node_id, verdict=verdict.verdict
            )
            return []
        seen = row["health_observed_at"]
        if seen is not None and verdict.observed_at <= seen:
            log.info(
                "stale_verdict_ignored",
                node_id=verdict.node_id,
                observed_at=verdict.observed_at.isoformat(),
            )
            return []
        actor = envelope.event.source
        state: NodeState = row["state"]
        target = self._verdict_target(verdict, state, failed_by_health=row["failed_by_health"])
        if target is None:
            await repo.note_verdict(verdict.node_id, verdict.observed_at)
            return []
        reason = _verdict_reason(verdict)
        moved = await repo.set_state(
            verdict.node_id,
            expected=state,
            state=target,
            reason=reason,
            actor=actor,
            at=utcnow(),
            failed_by_health=target == "failed",
            health_observed_at=verdict.observed_at,
        )
        if not moved:
            raise RuntimeError(f"node {verdict.node_id} changed state concurrently; will retry")
        log.info(
            "node_state_changed",
            node_id=verdict.node_id,
            from_state=state,
            to_state=target,
            actor=actor,
            verdict=verdict.verdict,
        )
        return [_state_event(row, target, reason, actor)]


def _verdict_reason(verdict: NodeHealthChanged) -> str:
    findings = "; ".join(
        f"{r.component + ' ' if r.component else ''}{r.code}{': ' + r.message if r.message else ''}"
        for r in verdict.reasons
    )
    text = f"health verdict {verdict.verdict}" + (f": {findings}" if findings else "")
    return text[:512]


async def _apply_plan(
    plan: ImportPlan, repo: InventoryRepository, uow: UnitOfWork, actor: str
) -> None:
    """Write an import plan and emit one event per change, in one transaction."""
    now = utcnow()
    await _apply_sites_and_racks(plan, repo, uow, actor, now)
    await _apply_dedications(plan, repo, now)
    await _apply_nodes(plan, repo, uow, actor, now)


async def _apply_sites_and_racks(
    plan: ImportPlan, repo: InventoryRepository, uow: UnitOfWork, actor: str, now: dt.datetime
) -> None:
    await repo.insert_many(
        SITES,
        [
            {
                "site_id": s.site_id,
                "name": s.name,
                "region": s.region,
                "jurisdiction": s.jurisdiction,
                "registered_at": now,
                "updated_at": now,
            }
            for s in plan.new_sites
        ],
    )
    for site in plan.new_sites:
        uow.emit(
            NewEvent(
                SiteRegistered(
                    site_id=site.site_id,
                    name=site.name,
                    region=site.region,
                    jurisdiction=site.jurisdiction,
                    actor=actor,
                ),
                scope=site.site_id,
                subject=site.site_id,
            )
        )
    for site, changes in plan.changed_sites:
        await repo.update_one(
            SITES,
            "site_id",
            site.site_id,
            {
                "name": site.name,
                "region": site.region,
                "jurisdiction": site.jurisdiction,
                "updated_at": now,
            },
        )
        uow.emit(
            NewEvent(
                SiteUpdated(site_id=site.site_id, changes=list(changes), actor=actor),
                scope=site.site_id,
                subject=site.site_id,
            )
        )
    await repo.insert_many(
        RACKS,
        [
            {
                "rack_id": r.rack_id,
                "site_id": r.site_id,
                "kind": r.kind,
                "nvlink_domain_size": r.nvlink_domain_size,
                "tenant": tenant,
                "registered_at": now,
                "updated_at": now,
            }
            for r, tenant in plan.new_racks
        ],
    )
    for rack, tenant in plan.new_racks:
        uow.emit(
            NewEvent(
                RackRegistered(
                    rack_id=rack.rack_id,
                    site_id=rack.site_id,
                    kind=rack.kind,
                    nvlink_domain_size=rack.nvlink_domain_size,
                    tenant=tenant,
                    actor=actor,
                ),
                tenant=tenant,
                scope=rack.site_id,
                subject=rack.rack_id,
            )
        )
    for rack, changes in plan.changed_racks:
        await repo.update_one(
            RACKS,
            "rack_id",
            rack.rack_id,
            {"kind": rack.kind, "nvlink_domain_size": rack.nvlink_domain_size, "updated_at": now},
        )
        uow.emit(
            NewEvent(
                RackUpdated(
                    rack_id=rack.rack_id, site_id=rack.site_id, changes=list(changes), actor=actor
                ),
                scope=rack.site_id,
                subject=rack.rack_id,
            )
        )


async def _apply_dedications(plan: ImportPlan, repo: InventoryRepository, now: dt.datetime) -> None:
    """Dedications of existing racks and nodes (before nodes are written, so they see them)."""
    for dedication in plan.dedications:
        if dedication.target == "rack":
            await repo.set_rack_tenant(dedication.target_id, dedication.tenant, now)
    rack_tenants = {r.rack_id: t for r, t in plan.new_racks}
    moved_to = {c.spec.node_id: c.spec.rack_id for c in plan.changed_nodes}
    for dedication in plan.dedications:
        if dedication.target == "node":
            node_row = await repo.node(dedication.target_id)
            assert node_row is not None
            rack_id = moved_to.get(dedication.target_id, node_row["rack_id"])
            rack_row = await repo.rack(rack_id)
            rack_tenant = rack_tenants.get(
                rack_id, rack_row["tenant"] if rack_row is not None else None
            )
            await repo.set_node_tenant(dedication.target_id, dedication.tenant, rack_tenant, now)


async def _apply_nodes(
    plan: ImportPlan, repo: InventoryRepository, uow: UnitOfWork, actor: str, now: dt.datetime
) -> None:
    """New and changed nodes, then the dedication events."""
    new_rows = [
        node_values(
            new.decl.spec,
            state=new.decl.initial_state,
            actor=actor,
            reason="imported",
            node_tenant=new.node_tenant,
            tenant=new.tenant,
            now=now,
        )
        for new in plan.new_nodes
    ]
    await repo.insert_many(NODES, new_rows)
    for new in plan.new_nodes:
        spec = new.decl.spec
        node = node_view(
            spec,
            state=new.decl.initial_state,
            state_reason="imported",
            state_actor=actor,
            state_changed_at=now,
            node_tenant=new.node_tenant,
            rack_tenant=new.tenant if new.node_tenant is None else None,
            registered_at=now,
            updated_at=now,
        )
        uow.emit(
            NewEvent(
                NodeRegistered(node=node, actor=actor),
                tenant=node.tenant,
                scope=spec.site_id,
                subject=spec.node_id,
            )
        )
    for node_change in plan.changed_nodes:
        values = hardware_values(node_change.spec)
        values["tenant"] = node_change.tenant
        values["updated_at"] = now
        await repo.update_one(NODES, "node_id", node_change.spec.node_id, values)
    if plan.changed_nodes:
        rows = await repo.nodes_by_id(c.spec.node_id for c in plan.changed_nodes)
        for node_change in plan.changed_nodes:
            node = node_of_row(rows[node_change.spec.node_id])
            uow.emit(
                NewEvent(
                    NodeUpdated(
                        node_id=node.node_id,
                        site_id=node.site_id,
                        changes=list(node_change.changes),
                        node=node,
                        actor=actor,
                    ),
                    tenant=node.tenant,
                    scope=node.site_id,
                    subject=node.node_id,
                )
            )
    for change in plan.dedications:
        uow.emit(
            NewEvent(
                DedicationChanged(
                    target=change.target,
                    target_id=change.target_id,
                    site_id=change.site_id,
                    previous_tenant=change.previous_tenant,
                    tenant=change.tenant,
                    node_ids=list(change.node_ids),
                    reason="factory description",
                    actor=actor,
                ),
                tenant=change.tenant or change.previous_tenant,
                scope=change.site_id,
                subject=change.target_id,
            )
        )
