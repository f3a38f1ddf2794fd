"""Health contracts, version 1: the node health verdict.

The health service (another issue) turns heartbeats and telemetry into a verdict
per node and publishes ``NodeHealthChanged`` whenever a node's verdict changes.
Inventory consumes it (a fatal verdict marks the node failed); the scheduler and
billing may consume it too. Only the verdict event lives here for now; the health
service adds its other messages to this module.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from aifactory.contracts.base import Contract, Timestamp
from aifactory.contracts.registry import message

NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*$")]
SiteId = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]*$")]

Verdict = Literal["healthy", "degraded", "failed", "unreachable"]
"""``failed``: a fatal fault (e.g. a GPU fell off the bus, uncorrectable ECC);
``unreachable``: the node stopped heartbeating; ``degraded``: usable with a fault
worth watching; ``healthy``: nothing wrong."""

RecommendedAction = Literal["none", "drain", "reset", "replace", "quarantine"]


class HealthReason(Contract, frozen=True, kw_only=True):
    """One finding behind a verdict (a GPU XID, an ECC count, a missed heartbeat)."""

    code: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    """A stable code, e.g. ``xid_79``, ``ecc_uncorrectable``, ``heartbeat_lost``."""
    message: Annotated[str, msgspec.Meta(max_length=512)] = ""
    """What an operator reads, e.g. ``GPU 3 has fallen off the bus``."""
    component: Annotated[str, msgspec.Meta(max_length=64)] = ""
    """The part concerned, e.g. ``gpu:3``, ``nvlink:2``, ``node``."""


@message(domain="health", name="node_health_changed", version=1, kind="evt", scope="site")
class NodeHealthChanged(Contract, frozen=True, kw_only=True):
    """A node's health verdict changed."""

    node_id: NodeId
    site_id: SiteId
    verdict: Verdict
    previous_verdict: Verdict | None = None
    reasons: Annotated[list[HealthReason], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    recommended_action: RecommendedAction = "none"
    first_seen: Timestamp
    """When the condition behind this verdict was first seen."""
    observed_at: Timestamp
    """When the health service concluded this verdict (orders verdicts of one node)."""


# ---------------------------------------------------------------------- telemetry
# Telemetry (kind ``tlm``) travels on core NATS, has no stream and is lossy by
# design. Node agents publish it as a bare msgspec JSON body, without CloudEvents
# headers: the subject names the type, and at thousands of messages per second
# header parsing would cost more than the payload. Per-GPU samples are encoded as
# JSON arrays (``array_like``) to keep a node's message compact; new sample fields
# are appended at the end with a default, so older readers and payloads still decode.
# The scalar-only sample Structs are not tracked by the garbage collector (``gc=False``:
# they cannot form cycles), which matters at tens of thousands of samples a second.

AcceleratorKind = Literal["nvidia", "trainium"]
TelemetrySource = Literal["nvml", "simulated"]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
AgentSession = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
IntervalMs = Annotated[int, msgspec.Meta(ge=10, le=3_600_000)]


class GpuSample(Contract, frozen=True, kw_only=True, array_like=True, gc=False):
    """One accelerator's readings; ``null`` where the device or driver does not report it.

    On the wire an array in field order:
    ``[index, temperature_c, power_w, utilization_pct, memory_used_mib, ecc_sbe_volatile,
    ecc_dbe_volatile, retired_pages_dbe, remap_pending, remap_failure, nvlink_errors]``.
    """

    index: Annotated[int, msgspec.Meta(ge=0, le=255)]
    temperature_c: Annotated[int, msgspec.Meta(ge=-50, le=200)] | None = None
    power_w: Annotated[float, msgspec.Meta(ge=0, le=10_000)] | None = None
    utilization_pct: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    memory_used_mib: Annotated[int, msgspec.Meta(ge=0, le=16_777_216)] | None = None
    ecc_sbe_volatile: Count | None = None
    """Corrected (single-bit) ECC errors since the last driver load or reset."""
    ecc_dbe_volatile: Count | None = None
    """Uncorrected (double-bit) ECC errors since the last driver load or reset."""
    retired_pages_dbe: Count | None = None
    """Pages retired for double-bit errors (pre-Ampere page retirement)."""
    remap_pending: bool | None = None
    """A row remapping waits for a GPU reset (Ampere and later)."""
    remap_failure: bool | None = None
    """A row remapping failed: the GPU is out of spare rows."""
    nvlink_errors: Count | None = None
    """Sum of NVLink CRC, replay and recovery error counters over all links."""


class XidEvent(Contract, frozen=True, kw_only=True, gc=False):
    """One Xid error the driver reported for a GPU during this agent session."""

    gpu: Annotated[int, msgspec.Meta(ge=0, le=255)]
    xid: Annotated[int, msgspec.Meta(ge=0, le=65_535)]
    at: Timestamp


@message(domain="health", name="node_telemetry", version=1, kind="tlm")
class NodeTelemetry(Contract, frozen=True, kw_only=True):
    """A node agent's periodic accelerator readings (also counts as a heartbeat).

    ``xids`` repeats the session's recent Xid events in every message (at most 32),
    so one lost message never loses a fatal Xid.
    """

    node_id: NodeId
    session: AgentSession
    """Random id of this agent run; a new one means the agent (or the node) restarted."""
    seq: Count
    sent_at: Timestamp
    interval_ms: IntervalMs
    """The agent's reporting interval: silence longer than a few of them is a lost node."""
    source: TelemetrySource
    accelerator: AcceleratorKind = "nvidia"
    gpus: Annotated[list[GpuSample], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    xids: Annotated[list[XidEvent], msgspec.Meta(max_length=32)] = msgspec.field(
        default_factory=list
    )


@message(domain="health", name="node_heartbeat", version=1, kind="tlm")
class NodeHeartbeat(Contract, frozen=True, kw_only=True):
    """A node agent is alive (sent on the intervals that carry no telemetry)."""

    node_id: NodeId
    session: AgentSession
    seq: Count
    sent_at: Timestamp
    interval_ms: IntervalMs
    source: TelemetrySource
    accelerator: AcceleratorKind = "nvidia"
    accelerators: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0
    """Accelerators the agent can see."""


# ---------------------------------------------------------------------- alerts

AlertSeverity = Literal["critical", "warning"]
RuleCode = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]
"""A rule's stable code, e.g. ``xid_79``, ``ecc_dbe``, ``thermal_critical``, ``heartbeat_lost``."""
RackKey = Annotated[str, msgspec.Meta(max_length=63)]
Summary = Annotated[str, msgspec.Meta(max_length=512)]


@message(domain="health", name="alert_raised", version=1, kind="evt", scope="site")
class AlertRaised(Contract, frozen=True, kw_only=True):
    """An alert opened for a (node, rule) pair (one open alert per pair: deduplicated).

    Alerts are grouped per rack (``rack_id``). A silenced alert is not announced until
    its silence ends while it is still open.
    """

    alert_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    node_id: NodeId
    site_id: SiteId
    rack_id: RackKey = ""
    rule: RuleCode
    severity: AlertSeverity
    summary: Summary = ""
    component: Annotated[str, msgspec.Meta(max_length=256)] = ""
    first_seen: Timestamp
    raised_at: Timestamp


@message(domain="health", name="alert_resolved", version=1, kind="evt", scope="site")
class AlertResolved(Contract, frozen=True, kw_only=True):
    """An announced alert's condition has been gone for the minimum dwell time."""

    alert_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    node_id: NodeId
    site_id: SiteId
    rack_id: RackKey = ""
    rule: RuleCode
    raised_at: Timestamp
    resolved_at: Timestamp


# ---------------------------------------------------------------------- silences

Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class SilenceView(Contract, frozen=True, kw_only=True):
    """A silence: ``node_id``'s alerts (one ``rule``, or all) are held back until ``ends_at``."""

    silence_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    node_id: NodeId
    rule: RuleCode | None = None
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    actor: Actor
    starts_at: Timestamp
    ends_at: Timestamp
    lifted: bool = False


@message(domain="health", name="silence_node", version=1, kind="cmd", reply=SilenceView)
class SilenceNode(Contract, frozen=True, kw_only=True):
    """Silence a node's alerts for a while, with a reason (``not_found`` for an unknown node)."""

    node_id: NodeId
    duration_s: Annotated[int, msgspec.Meta(ge=1, le=30 * 24 * 3600)]
    """How long, in seconds (at most 30 days)."""
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    actor: Actor
    rule: RuleCode | None = None
    """Only this rule's alerts; all of the node's when omitted."""


@message(domain="health", name="lift_silence", version=1, kind="cmd", reply=SilenceView)
class LiftSilence(Contract, frozen=True, kw_only=True):
    """End a silence before it expires."""

    silence_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    actor: Actor


# ---------------------------------------------------------------------- queries


class NodeHealthView(Contract, frozen=True, kw_only=True):
    """One node's current verdict as the health service holds it."""

    node_id: NodeId
    site_id: SiteId
    rack_id: RackKey = ""
    verdict: Verdict
    recommended_action: RecommendedAction = "none"
    reasons: list[HealthReason] = msgspec.field(default_factory=list)
    first_seen: Timestamp | None = None
    observed_at: Timestamp | None = None
    last_heartbeat_at: Timestamp | None = None
    admin_state: Annotated[str, msgspec.Meta(max_length=32)] = ""
    """The node's admin state as inventory last reported it."""


class IngestStats(Contract, frozen=True, kw_only=True):
    """What the telemetry ingest has seen since the health service started."""

    received: Count = 0
    applied: Count = 0
    garbage: Count = 0
    """Messages that did not decode (dropped)."""
    unknown_node: Count = 0
    """Messages from nodes inventory does not know (dropped)."""
    unknown_node_ids: Annotated[list[str], msgspec.Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    overflow: Count = 0
    """Messages dropped because the ingest buffer was full."""


class NodeHealthPage(Contract, frozen=True, kw_only=True):
    """Reply to ``ListNodeHealth``: one page in node id order, counts per verdict, ingest stats."""

    nodes: list[NodeHealthView]
    total: Count
    next_after: NodeId | None = None
    counts: dict[Verdict, int] = msgspec.field(default_factory=dict)
    ingest: IngestStats = msgspec.field(default_factory=IngestStats)


@message(domain="health", name="list_node_health", version=1, kind="qry", reply=NodeHealthPage)
class ListNodeHealth(Contract, frozen=True, kw_only=True):
    """Verdicts of the expected nodes, filtered by verdict and site, a page at a time."""

    verdict: Verdict | None = None
    site_id: SiteId | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
    after: NodeId | None = None


class AlertView(Contract, frozen=True, kw_only=True):
    """An alert, open or resolved, as recorded in the alert history."""

    alert_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    node_id: NodeId
    site_id: SiteId
    rack_id: RackKey = ""
    rule: RuleCode
    severity: AlertSeverity
    summary: Summary = ""
    component: Annotated[str, msgspec.Meta(max_length=256)] = ""
    state: Literal["open", "resolved"]
    silenced: bool = False
    announced: bool = False
    """Whether ``AlertRaised`` was published (a silenced alert is not announced)."""
    occurrences: Count = 1
    """How often the condition came back while the alert was open (deduplicated)."""
    first_seen: Timestamp
    raised_at: Timestamp
    resolved_at: Timestamp | None = None


class AlertGroup(Contract, frozen=True, kw_only=True):
    """The alerts of one rack."""

    site_id: SiteId
    rack_id: RackKey = ""
    alerts: list[AlertView]


class AlertReport(Contract, frozen=True, kw_only=True):
    """Reply to ``ListAlerts``: alerts grouped per rack, and the active silences."""

    groups: list[AlertGroup]
    total: Count
    silences: list[SilenceView] = msgspec.field(default_factory=list)


@message(domain="health", name="list_alerts", version=1, kind="qry", reply=AlertReport)
class ListAlerts(Contract, frozen=True, kw_only=True):
    """Open alerts (or the history, resolved included), newest first, grouped per rack."""

    include_resolved: bool = False
    node_id: NodeId | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 500
