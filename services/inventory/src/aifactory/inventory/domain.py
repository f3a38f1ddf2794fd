"""Inventory's rules: node records, field changes, dedications and the import plan.

``plan_import`` compares a parsed factory description with what inventory holds
(a ``Snapshot``) and decides, without touching anything, what to create, what to
update (with the changed fields), what is already as described, and which
dedications change - or raises ``DescriptionError`` naming the line of the first
problem (an unknown site or rack, a node moved across sites, a dedication that
contradicts its rack's). Applying the plan is the repository's job; because the
plan is complete before anything is written, an import is all or nothing. Pure:
no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aifactory.contracts.inventory.v1 import (
    DedicationTarget,
    FieldChange,
    FieldValue,
    Node,
    NodeSpec,
    NodeState,
)
from aifactory.inventory.description import (
    DedicationDecl,
    Description,
    NodeDecl,
    RackDecl,
    SiteDecl,
)
from aifactory.inventory.errors import DedicationConflict, DescriptionError

HARDWARE_FIELDS: tuple[str, ...] = (
    "rack_id",
    "model",
    "accelerator_count",
    "accelerator_memory_gib",
    "cpu_cores",
    "ram_gib",
    "interconnect",
    "labels",
    "accelerators",
)
"""The node fields an update may change (``site_id`` never changes: a node does not move sites)."""


@dataclass(frozen=True, slots=True)
class SiteRecord:
    """A site as inventory holds it."""

    site_id: str
    name: str
    region: str
    jurisdiction: str


@dataclass(frozen=True, slots=True)
class RackRecord:
    """A rack as inventory holds it."""

    rack_id: str
    site_id: str
    kind: str
    nvlink_domain_size: int
    tenant: str | None


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node as inventory holds it: hardware, state and dedication."""

    spec: NodeSpec
    state: NodeState
    node_tenant: str | None
    tenant: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What inventory holds, as far as an import needs to know."""

    sites: Mapping[str, SiteRecord]
    racks: Mapping[str, RackRecord]
    nodes: Mapping[str, NodeRecord]


@dataclass(frozen=True, slots=True)
class DedicationChange:
    """A node's or rack's own dedication changes; ``node_ids``: effective tenant changed."""

    target: DedicationTarget
    target_id: str
    site_id: str
    previous_tenant: str | None
    tenant: str | None
    node_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NewNode:
    """A node to create, with the tenant it starts dedicated to."""

    decl: NodeDecl
    node_tenant: str | None
    tenant: str | None


@dataclass(frozen=True, slots=True)
class NodeChange:
    """An existing node whose hardware, rack (or, through a rack move, tenant) changes."""

    spec: NodeSpec
    changes: tuple[FieldChange, ...]
    tenant: str | None


@dataclass
class ImportPlan:
    """Everything an import will do; empty lists mean nothing changes."""

    new_sites: list[SiteDecl] = field(default_factory=list)
    changed_sites: list[tuple[SiteDecl, tuple[FieldChange, ...]]] = field(default_factory=list)
    unchanged_sites: int = 0
    new_racks: list[tuple[RackDecl, str | None]] = field(default_factory=list)
    changed_racks: list[tuple[RackDecl, tuple[FieldChange, ...]]] = field(default_factory=list)
    unchanged_racks: int = 0
    new_nodes: list[NewNode] = field(default_factory=list)
    changed_nodes: list[NodeChange] = field(default_factory=list)
    unchanged_nodes: int = 0
    dedications: list[DedicationChange] = field(default_factory=list)

    @property
    def event_count(self) -> int:
        """How many events applying this plan emits (one per change)."""
        return (
            len(self.new_sites)
            + len(self.changed_sites)
            + len(self.new_racks)
            + len(self.changed_racks)
            + len(self.new_nodes)
            + len(self.changed_nodes)
            + len(self.dedications)
        )


# ------------------------------------------------------------------ small rules


def _builtin(value: object) -> FieldValue:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value  # type: ignore[return-value]


def diff_fields(before: object, after: object, names: Iterable[str]) -> tuple[FieldChange, ...]:
    """The ``FieldChange`` of each named attribute that differs between two records."""
    changes = []
    for name in names:
        old, new = getattr(before, name), getattr(after, name)
        if old != new:
            changes.append(FieldChange(field=name, before=_builtin(old), after=_builtin(new)))
    return tuple(changes)


def effective_tenant(node_tenant: str | None, rack_tenant: str | None) -> str | None:
    """A node's tenant: its own dedication, else its rack's, else None (shared pool)."""
    return node_tenant if node_tenant is not None else rack_tenant


def dedicated_via(node_tenant: str | None, rack_tenant: str | None) -> DedicationTarget | None:
    """Whether a node's tenant comes from its own dedication or its rack's."""
    if node_tenant is not None:
        return "node"
    return "rack" if rack_tenant is not None else None


def check_node_dedication(
    node_id: str, tenant: str | None, rack_id: str, rack_tenant: str | None
) -> None:
    """A node may not be dedicated to a tenant other than its rack's."""
    if tenant is not None and rack_tenant is not None and tenant != rack_tenant:
        raise DedicationConflict(
            f"node {node_id} is in rack {rack_id}, dedicated as a whole to {rack_tenant}; "
            f"undedicate the rack before dedicating the node to {tenant}",
            {"node_id": node_id, "rack_id": rack_id, "rack_tenant": rack_tenant},
        )


def check_rack_dedication(
    rack_id: str, tenant: str | None, node_tenants: Mapping[str, str | None]
) -> None:
    """A rack may not be dedicated to one tenant while a node in it is dedicated to another."""
    if tenant is None:
        return
    for node_id, node_tenant in sorted(node_tenants.items()):
        if node_tenant is not None and node_tenant != tenant:
            raise DedicationConflict(
                f"rack {rack_id} holds node {node_id}, dedicated to {node_tenant}; "
                f"undedicate the node before dedicating the rack to {tenant}",
                {"rack_id": rack_id, "node_id": node_id, "node_tenant": node_tenant},
            )


def node_view(
    spec: NodeSpec,
    *,
    state: NodeState,
    state_reason: str,
    state_actor: str,
    state_changed_at: dt.datetime,
    node_tenant: str | None,
    rack_tenant: str | None,
    registered_at: dt.datetime,
    updated_at: dt.datetime,
) -> Node:
    """The ``Node`` contract of a node record."""
    return Node(
        **msgspec.structs.asdict(spec),
        state=state,
        state_reason=state_reason,
        state_actor=state_actor,
        state_changed_at=state_changed_at,
        tenant=effective_tenant(node_tenant, rack_tenant),
        dedicated_via=dedicated_via(node_tenant, rack_tenant),
        registered_at=registered_at,
        updated_at=updated_at,
    )


def updated_spec(spec: NodeSpec, **values: object) -> NodeSpec:
    """``spec`` with the given (non-None) fields replaced."""
    given: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    if "labels" in given:
        given["labels"] = dict(sorted(given["labels"].items()))
    if "accelerators" in given:
        given["accelerators"] = sorted(given["accelerators"], key=lambda a: a.index)
    return msgspec.structs.replace(spec, **given)


# ------------------------------------------------------------------ import plan


def plan_import(description: Description, snapshot: Snapshot) -> ImportPlan:
    """What applying ``description`` to ``snapshot`` does; ``DescriptionError`` if it cannot."""
    plan = ImportPlan()
    _plan_sites(description, snapshot, plan)
    rack_sites = _plan_racks(description, snapshot, plan)
    new_decls, changed = _plan_nodes(description, snapshot, plan, rack_sites)
    tenancy = _Tenancy.of(description, snapshot, new_decls, changed)
    tenancy.apply(description.dedications)
    for node_id, (spec, changes) in changed.items():
        before, after = snapshot.nodes[node_id].tenant, tenancy.effective(node_id)
        extra = (
            (FieldChange(field="tenant", before=before, after=after),) if before != after else ()
        )
        plan.changed_nodes.append(NodeChange(spec, changes + extra, after))
    for node_id, decl in new_decls.items():
        plan.new_nodes.append(
            NewNode(decl, tenancy.node_tenant[node_id], tenancy.effective(node_id))
        )
    for rack_decl in description.racks:
        if rack_decl.rack_id not in snapshot.racks:
            plan.new_racks.append((rack_decl, tenancy.rack_tenant[rack_decl.rack_id]))
    plan.dedications = tenancy.changes(snapshot, moved=set(changed))
    return plan


def _plan_sites(description: Description, snapshot: Snapshot, plan: ImportPlan) -> None:
    for decl in description.sites:
        existing = snapshot.sites.get(decl.site_id)
        if existing is None:
            plan.new_sites.append(decl)
            continue
        changes = diff_fields(existing, decl, ("name", "region", "jurisdiction"))
        if changes:
            plan.changed_sites.append((decl, changes))
        else:
            plan.unchanged_sites += 1


def _plan_racks(description: Description, snapshot: Snapshot, plan: ImportPlan) -> dict[str, str]:
    known_sites = set(snapshot.sites) | {s.site_id for s in description.sites}
    rack_sites = {rack_id: rack.site_id for rack_id, rack in snapshot.racks.items()}
    for decl in description.racks:
        if decl.site_id not in known_sites:
            raise DescriptionError(
                f"rack {decl.rack_id} names unknown site {decl.site_id!r}; "
                "declare it under 'sites' or import it first",
                line=decl.line,
            )
        existing = snapshot.racks.get(decl.rack_id)
        if existing is None:
            rack_sites[decl.rack_id] = decl.site_id
            continue
        if existing.site_id != decl.site_id:
            raise DescriptionError(
                f"rack {decl.rack_id} is at site {existing.site_id}, not {decl.site_id}; "
                "a rack does not move between sites",
                line=decl.line,
            )
        changes = diff_fields(existing, decl, ("kind", "nvlink_domain_size"))
        if changes:
            plan.changed_racks.append((decl, changes))
        else:
            plan.unchanged_racks += 1
    return rack_sites


def _plan_nodes(
    description: Description,
    snapshot: Snapshot,
    plan: ImportPlan,
    rack_sites: Mapping[str, str],
) -> tuple[dict[str, NodeDecl], dict[str, tuple[NodeSpec, tuple[FieldChange, ...]]]]:
    """New nodes, and existing nodes with their changed fields (unchanged ones are counted)."""
    new_decls: dict[str, NodeDecl] = {}
    changed: dict[str, tuple[NodeSpec, tuple[FieldChange, ...]]] = {}
    for decl in description.nodes:
        spec = decl.spec
        rack_site = rack_sites.get(spec.rack_id)
        if rack_site is None:
            raise DescriptionError(
                f"node {spec.node_id} names unknown rack {spec.rack_id!r}; "
                "declare it under 'racks' or import it first",
                line=decl.line,
            )
        if rack_site != spec.site_id:
            raise DescriptionError(
                f"node {spec.node_id} is declared at site {spec.site_id} but rack "
                f"{spec.rack_id} is at site {rack_site}",
                line=decl.line,
            )
        existing = snapshot.nodes.get(spec.node_id)
        if existing is None:
            new_decls[spec.node_id] = decl
            continue
        if existing.spec.site_id != spec.site_id:
            raise DescriptionError(
                f"node {spec.node_id} is registered at site {existing.spec.site_id}, not "
                f"{spec.site_id}; a node does not move between sites (retire it, register anew)",
                line=decl.line,
            )
        changes = diff_fields(existing.spec, spec, HARDWARE_FIELDS)
        if changes:
            changed[spec.node_id] = (spec, changes)
        else:
            plan.unchanged_nodes += 1
    return new_decls, changed


@dataclass
class _Tenancy:
    """Who each rack and node is dedicated to, before and after a description's dedications."""

    rack_tenant: dict[str, str | None]
    node_tenant: dict[str, str | None]
    node_rack: dict[str, str]
    old_rack_tenant: dict[str, str | None]
    old_node_tenant: dict[str, str | None]
    old_effective: dict[str, str | None]
    new_racks: set[str]
    new_nodes: set[str]
    lines: dict[tuple[DedicationTarget, str], int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        description: Description,
        snapshot: Snapshot,
        new_decls: Mapping[str, NodeDecl],
        changed: Mapping[str, tuple[NodeSpec, tuple[FieldChange, ...]]],
    ) -> _Tenancy:
        rack_tenant = {r: rec.tenant for r, rec in snapshot.racks.items()}
        new_racks = {d.rack_id for d in description.racks if d.rack_id not in rack_tenant}
        rack_tenant.update(dict.fromkeys(new_racks))
        node_tenant = {n: rec.node_tenant for n, rec in snapshot.nodes.items()}
        node_tenant.update(dict.fromkeys(new_decls))
        node_rack = {n: rec.spec.rack_id for n, rec in snapshot.nodes.items()}
        node_rack.update({n: spec.rack_id for n, (spec, _) in changed.items()})
        node_rack.update({n: d.spec.rack_id for n, d in new_decls.items()})
        return cls(
            rack_tenant=rack_tenant,
            node_tenant=node_tenant,
            node_rack=node_rack,
            old_rack_tenant=dict(rack_tenant),
            old_node_tenant=dict(node_tenant),
            old_effective={n: rec.tenant for n, rec in snapshot.nodes.items()},
            new_racks=new_racks,
            new_nodes=set(new_decls),
        )

    def effective(self, node_id: str) -> str | None:
        """A node's tenant after the description."""
        return effective_tenant(
            self.node_tenant[node_id], self.rack_tenant[self.node_rack[node_id]]
        )

    def nodes_in(self, rack_id: str) -> list[str]:
        """The nodes in a rack after the description."""
        return sorted(n for n, r in self.node_rack.items() if r == rack_id)

    def apply(self, dedications: Iterable[DedicationDecl]) -> None:
        """Apply the dedications; ``DescriptionError`` on an unknown target or a conflict."""
        for ded in dedications:
            self.lines[(ded.target, ded.target_id)] = ded.line
            table = self.rack_tenant if ded.target == "rack" else self.node_tenant
            if ded.target_id not in table:
                raise DescriptionError(
                    f"dedication names unknown {ded.target} {ded.target_id!r}", line=ded.line
                )
            table[ded.target_id] = ded.tenant
        for (target, target_id), line in self.lines.items():
            try:
                if target == "rack":
                    members = {n: self.node_tenant[n] for n in self.nodes_in(target_id)}
                    check_rack_dedication(target_id, self.rack_tenant[target_id], members)
                else:
                    rack_id = self.node_rack[target_id]
                    check_node_dedication(
                        target_id, self.node_tenant[target_id], rack_id, self.rack_tenant[rack_id]
                    )
            except DedicationConflict as exc:
                raise DescriptionError(exc.message, line=line) from None

    def changes(self, snapshot: Snapshot, *, moved: set[str]) -> list[DedicationChange]:
        """One change per existing rack or node whose own dedication changes.

        New racks and nodes carry their tenant in their registration event, and nodes
        that move racks in their update event, so neither is listed again here.
        """
        attributed = set(moved)
        out = []
        for target, target_id in self.lines:
            if target == "rack":
                if target_id in self.new_racks:
                    continue
                before, after = self.old_rack_tenant[target_id], self.rack_tenant[target_id]
                candidates = [n for n in self.nodes_in(target_id) if n not in self.new_nodes]
                site_id = snapshot.racks[target_id].site_id
            else:
                if target_id in self.new_nodes:
                    continue
                before, after = self.old_node_tenant[target_id], self.node_tenant[target_id]
                candidates = [target_id]
                site_id = snapshot.nodes[target_id].spec.site_id
            if before == after:
                continue
            affected = tuple(
                n
                for n in candidates
                if n not in attributed and self.old_effective[n] != self.effective(n)
            )
            attributed.update(affected)
            out.append(DedicationChange(target, target_id, site_id, before, after, affected))
        out.sort(key=lambda d: (d.target == "node", d.target_id))
        return out
