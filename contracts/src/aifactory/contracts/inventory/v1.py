"""Inventory contracts, version 1: the factory's hardware of record.

Inventory owns sites (with their jurisdiction), racks with their NVLink domain,
nodes with their accelerators, each node's admin state and tenant dedication. It
emits an event for every change (site / rack / node registered, node updated with
the changed fields, node state changed, dedication changed) and answers commands
(register / update a node, cordon, drain, uncordon, maintenance, retire, dedicate,
undedicate, import a factory description) and queries (get node, list nodes,
capacity per site and accelerator model, export the factory description).

Admin states: ``provisioning -> available <-> cordoned -> draining -> maintenance ->
available``; any -> ``failed`` on a fatal health verdict; ``failed -> available`` only
by an operator (``uncordon``); any -> ``retired`` (terminal). services/inventory/README.md
has the full transition table.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from aifactory.contracts.base import Contract, Timestamp
from aifactory.contracts.registry import message

NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*$")]
"""A node's id: its short hostname, lower case (``gpu-a001``)."""
RackId = Annotated[str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*$")]
SiteId = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]*$")]
TenantId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
]
Jurisdiction = Annotated[
    str, msgspec.Meta(min_length=2, max_length=64, pattern=r"^[A-Z]{2,3}(/[A-Z0-9-]{1,16})*$")
]
"""Where a site's data is governed: region code, then narrower parts (``EU/DE``, ``US/VA``)."""
Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
"""Who asked for a change: an operator (``alice@ops-host``) or a service (``health``)."""
Reason = Annotated[str, msgspec.Meta(max_length=512)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
LabelValue = Annotated[str, msgspec.Meta(max_length=255)]

AcceleratorModel = Literal[
    "B200", "B300", "GB200", "GB300", "H100", "H200", "Trainium2", "Trainium3"
]
"""Accelerator models inventory knows; a new model is a new enum value (a widening)."""
NodeState = Literal[
    "provisioning", "available", "cordoned", "draining", "maintenance", "failed", "retired"
]
InitialState = Literal["provisioning", "available"]
DedicationTarget = Literal["node", "rack"]


class Accelerator(Contract, frozen=True, kw_only=True):
    """One accelerator of a node, as discovered (NVML / Neuron) or declared."""

    index: Annotated[int, msgspec.Meta(ge=0, le=255)]
    uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    serial: Annotated[str, msgspec.Meta(max_length=64)] = ""


class NodeSpec(Contract, frozen=True, kw_only=True):
    """A node's hardware and placement: what an operator declares about it."""

    node_id: NodeId
    site_id: SiteId
    rack_id: RackId
    model: AcceleratorModel
    accelerator_count: Annotated[int, msgspec.Meta(ge=1, le=64)]
    accelerator_memory_gib: Annotated[int, msgspec.Meta(ge=1, le=4096)]
    """Memory per accelerator, GiB."""
    cpu_cores: Annotated[int, msgspec.Meta(ge=1, le=4096)]
    ram_gib: Annotated[int, msgspec.Meta(ge=1, le=65536)]
    interconnect: Annotated[str, msgspec.Meta(max_length=128)] = ""
    """Scale-out fabric, e.g. ``InfiniBand NDR 400G``, ``EFAv3``."""
    labels: Annotated[dict[Label, LabelValue], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=dict
    )
    accelerators: Annotated[list[Accelerator], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    """Individual devices, when known (may be empty until discovered)."""


class Node(NodeSpec, frozen=True, kw_only=True):
    """A node as inventory holds it: hardware, admin state and dedication."""

    state: NodeState
    state_reason: Reason = ""
    state_actor: Annotated[str, msgspec.Meta(max_length=128)] = ""
    state_changed_at: Timestamp
    tenant: TenantId | None = None
    """The tenant the node is dedicated to (itself or through its rack); None: shared pool."""
    dedicated_via: DedicationTarget | None = None
    registered_at: Timestamp
    updated_at: Timestamp


FieldValue = str | int | dict[str, str] | list[Accelerator] | None


class FieldChange(Contract, frozen=True, kw_only=True):
    """One changed field: its name, the value before and the value after."""

    field: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    before: FieldValue = None
    after: FieldValue = None


# ---------------------------------------------------------------------- events


@message(domain="inventory", name="site_registered", version=1, kind="evt", scope="site")
class SiteRegistered(Contract, frozen=True, kw_only=True):
    """A site (a data center under one jurisdiction) was added to the inventory."""

    site_id: SiteId
    name: Annotated[str, msgspec.Meta(max_length=128)] = ""
    region: Annotated[str, msgspec.Meta(max_length=64)] = ""
    jurisdiction: Jurisdiction
    actor: Actor


@message(domain="inventory", name="site_updated", version=1, kind="evt", scope="site")
class SiteUpdated(Contract, frozen=True, kw_only=True):
    """A site's name, region or jurisdiction changed."""

    site_id: SiteId
    changes: list[FieldChange]
    actor: Actor


@message(domain="inventory", name="rack_registered", version=1, kind="evt", scope="site")
class RackRegistered(Contract, frozen=True, kw_only=True):
    """A rack and its NVLink domain were added to a site."""

    rack_id: RackId
    site_id: SiteId
    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    """The rack's system, e.g. ``GB200-NVL72``, ``HGX-B200``, ``Trn3-UltraServer``."""
    nvlink_domain_size: Annotated[int, msgspec.Meta(ge=0, le=1152)] = 0
    """Accelerators sharing one NVLink (or NeuronLink) domain in this rack; 0: none declared."""
    tenant: TenantId | None = None
    actor: Actor


@message(domain="inventory", name="rack_updated", version=1, kind="evt", scope="site")
class RackUpdated(Contract, frozen=True, kw_only=True):
    """A rack's kind or NVLink domain size changed."""

    rack_id: RackId
    site_id: SiteId
    changes: list[FieldChange]
    actor: Actor


@message(domain="inventory", name="node_registered", version=1, kind="evt", scope="site")
class NodeRegistered(Contract, frozen=True, kw_only=True):
    """A node was added to the inventory (its full record, state and dedication included)."""

    node: Node
    actor: Actor


@message(domain="inventory", name="node_updated", version=1, kind="evt", scope="site")
class NodeUpdated(Contract, frozen=True, kw_only=True):
    """A node's hardware or placement changed: the changed fields and the node after."""

    node_id: NodeId
    site_id: SiteId
    changes: list[FieldChange]
    node: Node
    actor: Actor


@message(domain="inventory", name="node_state_changed", version=1, kind="evt", scope="site")
class NodeStateChanged(Contract, frozen=True, kw_only=True):
    """A node's admin state changed (cordoned, drained, failed, returned, retired, ...)."""

    node_id: NodeId
    site_id: SiteId
    rack_id: RackId
    model: AcceleratorModel
    accelerator_count: Annotated[int, msgspec.Meta(ge=1, le=64)]
    from_state: NodeState
    to_state: NodeState
    reason: Reason = ""
    actor: Actor
    tenant: TenantId | None = None
    changed_at: Timestamp


@message(domain="inventory", name="dedication_changed", version=1, kind="evt", scope="site")
class DedicationChanged(Contract, frozen=True, kw_only=True):
    """A node or a whole rack was dedicated to a tenant, or returned to the shared pool."""

    target: DedicationTarget
    target_id: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    site_id: SiteId
    previous_tenant: TenantId | None = None
    tenant: TenantId | None = None
    """None: the shared pool."""
    node_ids: list[NodeId]
    """The nodes whose effective tenant changed."""
    reason: Reason = ""
    actor: Actor


# ---------------------------------------------------------------------- commands


class NodeRegistration(Contract, frozen=True, kw_only=True):
    """Reply to ``RegisterNode``: the node, and whether it was new."""

    node: Node
    created: bool


@message(domain="inventory", name="register_node", version=1, kind="cmd", reply=NodeRegistration)
class RegisterNode(Contract, frozen=True, kw_only=True):
    """Add a node (the same hardware again changes nothing; different hardware is a conflict)."""

    node: NodeSpec
    initial_state: InitialState = "available"
    actor: Actor


class NodeUpdateResult(Contract, frozen=True, kw_only=True):
    """Reply to ``UpdateNode``: the changed fields (empty when nothing changed) and the node."""

    changes: list[FieldChange]
    node: Node


@message(domain="inventory", name="update_node", version=1, kind="cmd", reply=NodeUpdateResult)
class UpdateNode(Contract, frozen=True, kw_only=True):
    """Change a node's hardware or rack (within its site); omitted fields stay as they are."""

    node_id: NodeId
    rack_id: RackId | None = None
    model: AcceleratorModel | None = None
    accelerator_count: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None
    accelerator_memory_gib: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
    cpu_cores: Annotated[int, msgspec.Meta(ge=1, le=4096)] | None = None
    ram_gib: Annotated[int, msgspec.Meta(ge=1, le=65536)] | None = None
    interconnect: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    labels: Annotated[dict[Label, LabelValue], msgspec.Meta(max_length=64)] | None = None
    accelerators: Annotated[list[Accelerator], msgspec.Meta(max_length=64)] | None = None
    actor: Actor


class NodeStateResult(Contract, frozen=True, kw_only=True):
    """Reply to a state command: the state before and after (equal when nothing changed)."""

    node_id: NodeId
    previous_state: NodeState
    state: NodeState
    changed: bool


class NodeStateCommand(Contract, frozen=True, kw_only=True):
    """Fields shared by the admin state commands."""

    node_id: NodeId
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    actor: Actor


@message(domain="inventory", name="cordon_node", version=1, kind="cmd", reply=NodeStateResult)
class CordonNode(NodeStateCommand, frozen=True, kw_only=True):
    """Stop placing new work on a node (running work continues)."""


@message(domain="inventory", name="drain_node", version=1, kind="cmd", reply=NodeStateResult)
class DrainNode(NodeStateCommand, frozen=True, kw_only=True):
    """Cordon a node and ask for its running work to be moved off."""


@message(domain="inventory", name="uncordon_node", version=1, kind="cmd", reply=NodeStateResult)
class UncordonNode(NodeStateCommand, frozen=True, kw_only=True):
    """Make a node available again (also the operator's return of a failed node)."""


@message(
    domain="inventory", name="start_node_maintenance", version=1, kind="cmd", reply=NodeStateResult
)
class StartNodeMaintenance(NodeStateCommand, frozen=True, kw_only=True):
    """Put a drained (or failed, or provisioning) node into maintenance."""


@message(domain="inventory", name="retire_node", version=1, kind="cmd", reply=NodeStateResult)
class RetireNode(NodeStateCommand, frozen=True, kw_only=True):
    """Take a node out of the factory for good (terminal)."""


class DedicationResult(Contract, frozen=True, kw_only=True):
    """Reply to ``Dedicate``/``Undedicate``: the tenant before and after, and the nodes affected."""

    target: DedicationTarget
    target_id: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    previous_tenant: TenantId | None = None
    tenant: TenantId | None = None
    changed: bool
    node_ids: list[NodeId]


@message(domain="inventory", name="dedicate", version=1, kind="cmd", reply=DedicationResult)
class Dedicate(Contract, frozen=True, kw_only=True):
    """Dedicate a node or a whole rack to one tenant."""

    target: DedicationTarget
    target_id: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    tenant: TenantId
    reason: Reason = ""
    actor: Actor


@message(domain="inventory", name="undedicate", version=1, kind="cmd", reply=DedicationResult)
class Undedicate(Contract, frozen=True, kw_only=True):
    """Return a node or a whole rack to the shared pool."""

    target: DedicationTarget
    target_id: Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
    reason: Reason = ""
    actor: Actor


class ImportSummary(Contract, frozen=True, kw_only=True):
    """Reply to ``ImportFactory``: what was created, updated or already as described."""

    sites_created: int = 0
    sites_updated: int = 0
    sites_unchanged: int = 0
    racks_created: int = 0
    racks_updated: int = 0
    racks_unchanged: int = 0
    nodes_created: int = 0
    nodes_updated: int = 0
    nodes_unchanged: int = 0
    dedications_changed: int = 0
    events: int = 0
    """Events emitted (0 for a dry run or a description that changes nothing)."""
    dry_run: bool = False


@message(domain="inventory", name="import_factory", version=1, kind="cmd", reply=ImportSummary)
class ImportFactory(Contract, frozen=True, kw_only=True):
    """Apply a YAML factory description, atomically and idempotently.

    A description with any error applies nothing; the ``ErrorReply`` (``invalid_request``)
    names the YAML line in ``details.line``.
    """

    description_yaml: Annotated[str, msgspec.Meta(min_length=1, max_length=1_000_000)]
    actor: Actor
    dry_run: bool = False


# ---------------------------------------------------------------------- queries


class NodeDetails(Contract, frozen=True, kw_only=True):
    """Reply to ``GetNode``."""

    node: Node


@message(domain="inventory", name="get_node", version=1, kind="qry", reply=NodeDetails)
class GetNode(Contract, frozen=True, kw_only=True):
    """One node by id (``not_found`` when inventory has no such node)."""

    node_id: NodeId


class NodePage(Contract, frozen=True, kw_only=True):
    """Reply to ``ListNodes``: one page, in node id order."""

    nodes: list[Node]
    total: int
    """How many nodes match the filters (all pages)."""
    next_after: NodeId | None = None
    """Pass as ``after`` for the next page; None on the last page."""


@message(domain="inventory", name="list_nodes", version=1, kind="qry", reply=NodePage)
class ListNodes(Contract, frozen=True, kw_only=True):
    """Nodes filtered by site, rack, model, state and tenant, a page at a time.

    A page holds at most ``limit`` nodes and stays well under NATS' 1 MiB payload.
    """

    site_id: SiteId | None = None
    rack_id: RackId | None = None
    model: AcceleratorModel | None = None
    state: NodeState | None = None
    tenant: TenantId | None = None
    shared_only: bool = False
    """Only nodes in the shared pool (dedicated to no tenant)."""
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 200
    after: NodeId | None = None


class TenantCapacity(Contract, frozen=True, kw_only=True):
    """Capacity dedicated to one tenant within a site and model."""

    tenant: TenantId
    nodes: int
    accelerators: int
    nodes_available: int
    accelerators_available: int


class CapacityRow(Contract, frozen=True, kw_only=True):
    """Capacity of one accelerator model at one site (retired nodes are not counted)."""

    site_id: SiteId
    model: AcceleratorModel
    nodes_total: int
    accelerators_total: int
    nodes_available: int
    accelerators_available: int
    nodes_failed: int
    accelerators_failed: int
    nodes_by_state: dict[NodeState, int]
    dedicated: list[TenantCapacity]


class CapacityReport(Contract, frozen=True, kw_only=True):
    """Reply to ``GetCapacity``: one row per site and model."""

    rows: list[CapacityRow]


@message(domain="inventory", name="get_capacity", version=1, kind="qry", reply=CapacityReport)
class GetCapacity(Contract, frozen=True, kw_only=True):
    """Capacity per site and accelerator model, optionally for one site or model."""

    site_id: SiteId | None = None
    model: AcceleratorModel | None = None


class FactoryExport(Contract, frozen=True, kw_only=True):
    """Reply to ``ExportFactory``: the inventory as a factory description."""

    description_yaml: str
    sites: int
    racks: int
    nodes: int


@message(domain="inventory", name="export_factory", version=1, kind="qry", reply=FactoryExport)
class ExportFactory(Contract, frozen=True, kw_only=True):
    """The whole inventory as a YAML factory description (runs of alike nodes as ranges)."""

    site_id: SiteId | None = None
