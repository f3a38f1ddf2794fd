"""Job contracts, version 1: submitting AI jobs, the scheduler's decisions, the lifecycle.

Other systems submit a job either as a request (``submit_job``: the reply is the
accepted job's id, or an ``ErrorReply`` whose ``details["reason"]`` is a
``RejectionReason``) or by publishing ``job_submitted`` to JetStream (rejections come
back as ``job_rejected`` events). The same tenant and ``client_job_id`` always name the
same job: submitting it again returns the existing job, never a second one.

The scheduler (service ``scheduling``) emits, per job and scoped by tenant:
``job_accepted``, then ``job_placed`` (nodes and accelerator indices) or ``job_queued``
(with the reason it waits), or ``job_rejected``; later ``job_preempted``,
``job_requeued`` (node failure or drain, preemption, key revoked), ``job_cancelled`` and
``job_abandoned`` (retry limit reached). The workload side (whatever runs the job on
the nodes) reports ``job_started``, ``job_finished`` and ``job_failed``; the scheduler
consumes them, and a report for a job it does not know is dead-lettered with the reason.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from aifactory.contracts.base import Contract, Timestamp
from aifactory.contracts.registry import message

TenantId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
"""The scheduler's id of a job, derived from the tenant and client job id (``j-3f9a...``)."""
ClientJobId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
]
"""The submitting system's own id of the job: the idempotency key (per tenant)."""
NodeId = Annotated[str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*$")]
RackId = Annotated[str, msgspec.Meta(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*$")]
SiteId = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9-]*$")]
Jurisdiction = Annotated[
    str, msgspec.Meta(min_length=2, max_length=64, pattern=r"^[A-Z]{2,3}(/[A-Z0-9-]{1,16})*$")
]
"""A jurisdiction or a narrower part of one (``EU`` allows ``EU/DE`` and ``EU/FR``)."""
AcceleratorModel = Annotated[
    str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
"""An accelerator model as inventory names it (``GB200``, ``H200``, ``Trainium3``)."""
KeyId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=63)]
LabelValue = Annotated[str, msgspec.Meta(max_length=255)]
AcceleratorCount = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Attempt = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]

PriorityClass = Literal["critical", "standard", "preemptible"]
"""``critical`` may preempt ``preemptible`` jobs; the queue serves classes in this order."""
Isolation = Literal["dedicated-node", "exclusive-domain"]
"""``dedicated-node``: never share a node with another tenant (the default);
``exclusive-domain``: take whole NVLink domains, shared with no other job."""
JobState = Literal[
    "queued", "placed", "running", "finished", "failed", "cancelled", "rejected", "abandoned"
]
RejectionReason = Literal[
    "invalid_shape",  # total not a multiple of the per-node count, or per-node above the node size
    "unknown_tenant",  # the tenant has no quota at this factory
    "unknown_model",  # no node of any requested model exists
    "no_allowed_site",  # no site satisfies the job's allowed sites / jurisdictions
    "exceeds_quota",  # larger than the tenant's quota for every requested model
    "exceeds_factory",  # larger than every eligible site could ever hold
    "key_not_allowed",  # the dataset key may not be used at any eligible site
]
QueueReason = Literal[
    "insufficient_capacity",  # not enough free accelerators in the right shape now
    "quota",  # the tenant's quota for the model is in use by its other jobs
    "key_unusable",  # the dataset key is revoked, disabled or being destroyed
    "key_check_pending",  # the key service could not be asked yet; retried
    "waiting_behind",  # capacity is reserved for an earlier job (backfill rule)
    "preempted",  # preempted by a critical job; waits for capacity again
    "scheduling_pending",  # capacity just changed; the next pass decides
]
RequeueReason = Literal[
    "node_failed", "node_drained", "node_unavailable", "node_changed", "preempted", "key_revoked"
]


class JobSpec(Contract, frozen=True, kw_only=True):
    """What a submitting system asks for: the job, its gang shape and its constraints."""

    tenant: TenantId
    client_job_id: ClientJobId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    models: Annotated[list[AcceleratorModel], msgspec.Meta(min_length=1, max_length=8)]
    """Acceptable accelerator models, in order of preference; a gang uses one model."""
    accelerators: AcceleratorCount
    """Total accelerators of the gang (a multiple of ``accelerators_per_node``)."""
    accelerators_per_node: Annotated[int, msgspec.Meta(ge=1, le=64)]
    priority: PriorityClass = "standard"
    expected_runtime_s: Annotated[int, msgspec.Meta(ge=1, le=366 * 86400)] = 3600
    allowed_sites: Annotated[list[SiteId], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    """Sites the job (and its data) may run at; empty with no jurisdictions: anywhere."""
    allowed_jurisdictions: Annotated[list[Jurisdiction], msgspec.Meta(max_length=16)] = (
        msgspec.field(default_factory=list)
    )
    dataset_key_id: KeyId | None = None
    """The tenant's key protecting the job's data: it must be usable at the chosen site."""
    isolation: Isolation = "dedicated-node"
    labels: Annotated[dict[Label, LabelValue], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=dict
    )


class NodeAllocation(Contract, frozen=True, kw_only=True):
    """The accelerators a job holds on one node."""

    node_id: NodeId
    rack_id: RackId
    accelerator_indices: list[Annotated[int, msgspec.Meta(ge=0, le=255)]]


class JobView(Contract, frozen=True, kw_only=True):
    """A job as the scheduler holds it."""

    job_id: JobId
    spec: JobSpec
    state: JobState
    reason: Annotated[str, msgspec.Meta(max_length=64)] = ""
    message: Text = ""
    attempt: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Placements so far (the current one, while placed or running)."""
    requeues: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Requeues after node failures (counted against the retry limit)."""
    model: str = ""
    site_id: str = ""
    allocations: list[NodeAllocation] = msgspec.field(default_factory=list)
    submitted_at: Timestamp
    updated_at: Timestamp


# ---------------------------------------------------------------------- submission


@message(domain="jobs", name="job_submitted", version=1, kind="evt", scope="tenant")
class JobSubmitted(Contract, frozen=True, kw_only=True):
    """A system submits a job by publishing this to JetStream (the scheduler consumes it)."""

    job: JobSpec


class JobAcceptance(Contract, frozen=True, kw_only=True):
    """Reply to ``SubmitJob``: the job's id and where it stands (``created`` false: a repeat)."""

    job_id: JobId
    state: JobState
    created: bool
    reason: Annotated[str, msgspec.Meta(max_length=64)] = ""
    message: Text = ""


@message(domain="jobs", name="submit_job", version=1, kind="cmd", reply=JobAcceptance)
class SubmitJob(Contract, frozen=True, kw_only=True):
    """Submit a job (refused: ``invalid_request``, ``details.reason``, if it can never run)."""

    job: JobSpec


# ---------------------------------------------------------------------- decisions


@message(domain="jobs", name="job_accepted", version=1, kind="evt", scope="tenant")
class JobAccepted(Contract, frozen=True, kw_only=True):
    """The scheduler accepted a job (it will be placed now or queued)."""

    job_id: JobId
    spec: JobSpec
    accepted_at: Timestamp


@message(domain="jobs", name="job_queued", version=1, kind="evt", scope="tenant")
class JobQueued(Contract, frozen=True, kw_only=True):
    """A job waits: the reason says what blocks it (``explain_queue`` keeps it current)."""

    job_id: JobId
    tenant: TenantId
    reason: QueueReason
    message: Text = ""
    queued_at: Timestamp


@message(domain="jobs", name="job_placed", version=1, kind="evt", scope="tenant")
class JobPlaced(Contract, frozen=True, kw_only=True):
    """A whole gang was placed: the nodes and accelerator indices it holds."""

    job_id: JobId
    tenant: TenantId
    attempt: Attempt
    model: AcceleratorModel
    site_id: SiteId
    priority: PriorityClass
    allocations: Annotated[list[NodeAllocation], msgspec.Meta(min_length=1)]
    racks_spanned: Annotated[int, msgspec.Meta(ge=1)]
    domains_spanned: Annotated[int, msgspec.Meta(ge=1)]
    placed_at: Timestamp


@message(domain="jobs", name="job_rejected", version=1, kind="evt", scope="tenant")
class JobRejected(Contract, frozen=True, kw_only=True):
    """A submitted job can never run here; the reason says why."""

    job_id: JobId
    tenant: TenantId
    client_job_id: ClientJobId
    reason: RejectionReason
    message: Text = ""
    rejected_at: Timestamp


@message(domain="jobs", name="job_preempted", version=1, kind="evt", scope="tenant")
class JobPreempted(Contract, frozen=True, kw_only=True):
    """A preemptible job lost its accelerators to a critical job (it is requeued)."""

    job_id: JobId
    tenant: TenantId
    attempt: Attempt
    by_job_id: JobId | None = None
    """The critical job that needed the capacity (None: the tenant's key was revoked)."""
    node_ids: list[NodeId]
    preempted_at: Timestamp


@message(domain="jobs", name="job_requeued", version=1, kind="evt", scope="tenant")
class JobRequeued(Contract, frozen=True, kw_only=True):
    """A placed or running job went back to the queue; its accelerators are free."""

    job_id: JobId
    tenant: TenantId
    attempt: Attempt
    """The placement that ended."""
    reason: RequeueReason
    message: Text = ""
    requeues: Annotated[int, msgspec.Meta(ge=0)]
    requeued_at: Timestamp


@message(domain="jobs", name="job_cancelled", version=1, kind="evt", scope="tenant")
class JobCancelled(Contract, frozen=True, kw_only=True):
    """A job was cancelled by command; accelerators it held are free."""

    job_id: JobId
    tenant: TenantId
    previous_state: JobState
    reason: Text = ""
    actor: Actor
    cancelled_at: Timestamp


@message(domain="jobs", name="job_abandoned", version=1, kind="evt", scope="tenant")
class JobAbandoned(Contract, frozen=True, kw_only=True):
    """The scheduler gave up on a job: it lost its nodes more often than the retry limit allows."""

    job_id: JobId
    tenant: TenantId
    attempt: Attempt
    reason: Text
    requeues: Annotated[int, msgspec.Meta(ge=0)]
    abandoned_at: Timestamp


# ---------------------------------------------------------------------- workload reports


@message(domain="jobs", name="job_started", version=1, kind="evt", scope="tenant")
class JobStarted(Contract, frozen=True, kw_only=True):
    """The workload side reports that a placed job's processes started."""

    job_id: JobId
    tenant: TenantId
    attempt: Attempt | None = None
    """The placement it refers to; a report for an earlier placement is ignored."""
    started_at: Timestamp


@message(domain="jobs", name="job_finished", version=1, kind="evt", scope="tenant")
class JobFinished(Contract, frozen=True, kw_only=True):
    """The workload side reports that a job completed; its accelerators are free."""

    job_id: JobId
    tenant: TenantId
    attempt: Attempt | None = None
    exit_code: Annotated[int, msgspec.Meta(ge=-255, le=255)] = 0
    finished_at: Timestamp


@message(domain="jobs", name="job_failed", version=1, kind="evt", scope="tenant")
class JobFailed(Contract, frozen=True, kw_only=True):
    """The workload side reports that a job failed; its accelerators are free."""

    job_id: JobId
    tenant: TenantId
    attempt: Attempt | None = None
    exit_code: Annotated[int, msgspec.Meta(ge=-255, le=255)] = 1
    reason: Text = ""
    failed_at: Timestamp


# ---------------------------------------------------------------------- commands


class JobStatus(Contract, frozen=True, kw_only=True):
    """Reply to ``CancelJob``: the state before and after (``changed`` false: nothing to do)."""

    job_id: JobId
    previous_state: JobState
    state: JobState
    changed: bool


@message(domain="jobs", name="cancel_job", version=1, kind="cmd", reply=JobStatus)
class CancelJob(Contract, frozen=True, kw_only=True):
    """Cancel a job in any non-final state (``not_found`` for an unknown id)."""

    job_id: JobId
    reason: Text = ""
    actor: Actor


class TenantQuota(Contract, frozen=True, kw_only=True):
    """Reply to ``SetQuota``: the tenant's quotas after the change (model -> accelerators)."""

    tenant: TenantId
    limits: dict[str, Annotated[int, msgspec.Meta(ge=0)]]


@message(domain="jobs", name="set_quota", version=1, kind="cmd", reply=TenantQuota)
class SetQuota(Contract, frozen=True, kw_only=True):
    """Set how many accelerators of a model a tenant may hold at once (``*``: any other model).

    A tenant with no quota at all is unknown to the scheduler: its jobs are rejected.
    """

    tenant: TenantId
    model: Annotated[
        str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]*)$")
    ]
    accelerators: Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
    actor: Actor


# ---------------------------------------------------------------------- queries


@message(domain="jobs", name="get_job", version=1, kind="qry", reply=JobView)
class GetJob(Contract, frozen=True, kw_only=True):
    """One job by id (``not_found`` when unknown)."""

    job_id: JobId


class JobPage(Contract, frozen=True, kw_only=True):
    """Reply to ``ListJobs``: one page in job id order."""

    jobs: list[JobView]
    total: int
    next_after: JobId | None = None


@message(domain="jobs", name="list_jobs", version=1, kind="qry", reply=JobPage)
class ListJobs(Contract, frozen=True, kw_only=True):
    """Jobs filtered by tenant and state, a page at a time."""

    tenant: TenantId | None = None
    state: JobState | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 200
    after: JobId | None = None


class QueueEntry(Contract, frozen=True, kw_only=True):
    """One waiting job: its place in the queue and why it waits."""

    position: Annotated[int, msgspec.Meta(ge=1)]
    job_id: JobId
    tenant: TenantId
    name: str
    priority: PriorityClass
    accelerators: int
    models: list[str]
    reason: str
    message: Text = ""
    waiting_since: Timestamp


class QueueExplanation(Contract, frozen=True, kw_only=True):
    """Reply to ``ExplainQueue``: the waiting jobs in the order the scheduler serves them."""

    entries: list[QueueEntry]
    total: int


@message(domain="jobs", name="explain_queue", version=1, kind="qry", reply=QueueExplanation)
class ExplainQueue(Contract, frozen=True, kw_only=True):
    """The queue in service order (priority, fair share, FIFO) with each job's blocking reason."""

    tenant: TenantId | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 200
