"""Jobs as the scheduler reasons about them: identity, shape, admission, queue order.

Pure rules, no I/O. ``job_id_for`` derives a job's id from its tenant and client job
id, so the same submission always names the same job. ``check_admission`` decides
whether a job can ever run here (shape, known tenant and model, residency, quota,
size of the factory, key custody) and says why not; whether it runs *now* is the
engine's business. ``queue_key`` orders the queue: priority class, then fair share
(the tenant's accelerators in use), then submission order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aifactory.contracts.jobs.v1 import JobSpec, RejectionReason
from aifactory.scheduling.capacity import CapacityIndex
from aifactory.scheduling.placement import Placement

PRIORITY_RANK: Mapping[str, int] = {"critical": 0, "standard": 1, "preemptible": 2}
ANY_MODEL = "*"


def job_id_for(tenant: str, client_job_id: str) -> str:
    """The job id of a tenant's client job id (stable: the idempotency key)."""
    digest = hashlib.sha256(f"{tenant}\x00{client_job_id}".encode()).hexdigest()
    return f"j-{digest[:20]}"


def jurisdiction_allows(allowed: str, jurisdiction: str) -> bool:
    """Whether ``allowed`` (``EU``) covers a site's ``jurisdiction`` (``EU/DE``)."""
    return jurisdiction == allowed or jurisdiction.startswith(allowed + "/")


@dataclass(slots=True, eq=False)
class Job:
    """A job the scheduler tracks (queued, placed or running)."""

    job_id: str
    tenant: str
    client_job_id: str
    name: str
    priority: str
    models: tuple[str, ...]
    total: int
    width: int
    runtime_s: int
    allowed_sites: frozenset[str]
    jurisdictions: tuple[str, ...]
    """Residency: sites and jurisdictions allowed (both empty: anywhere)."""
    key_id: str | None
    isolation: str
    seq: int
    submitted_at: dt.datetime
    state: str = "queued"
    reason: str = ""
    message: str = ""
    attempt: int = 0
    requeues: int = 0
    placement: Placement | None = None
    masks: dict[str, int] = field(default_factory=dict)
    placed_at: dt.datetime | None = None
    key_sites: frozenset[str] | None = None
    """Sites where the dataset key may be used (None: no key, or not checked)."""
    key_pending: bool = False
    waiting_since: dt.datetime | None = None

    def may_run_at(self, site_id: str, jurisdiction: str) -> bool:
        """Whether residency allows this job at a site."""
        if not self.allowed_sites and not self.jurisdictions:
            return True
        return site_id in self.allowed_sites or any(
            jurisdiction_allows(a, jurisdiction) for a in self.jurisdictions if jurisdiction
        )

    @property
    def count(self) -> int:
        """Nodes in the gang."""
        return self.total // self.width

    @property
    def rank(self) -> int:
        """Priority rank (0 is served first)."""
        return PRIORITY_RANK[self.priority]

    def expected_end(self) -> dt.datetime | None:
        """When the current placement is expected to end."""
        if self.placed_at is None:
            return None
        return self.placed_at + dt.timedelta(seconds=self.runtime_s)


def job_from_spec(spec: JobSpec, job_id: str, now: dt.datetime) -> Job:
    """The engine's job for a submitted spec (not yet queued: ``seq`` comes from the engine)."""
    return Job(
        job_id=job_id,
        tenant=spec.tenant,
        client_job_id=spec.client_job_id,
        name=spec.name,
        priority=spec.priority,
        models=tuple(dict.fromkeys(spec.models)),
        total=spec.accelerators,
        width=spec.accelerators_per_node,
        runtime_s=spec.expected_runtime_s,
        allowed_sites=frozenset(spec.allowed_sites),
        jurisdictions=tuple(spec.allowed_jurisdictions),
        key_id=spec.dataset_key_id,
        isolation=spec.isolation,
        seq=0,
        submitted_at=now,
    )


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a job can never run here."""

    reason: RejectionReason
    message: str


def eligible_sites(
    index: CapacityIndex, spec_sites: Iterable[str], jurisdictions: Iterable[str]
) -> frozenset[str] | None:
    """The sites residency allows (None: no restriction)."""
    sites = set(spec_sites)
    allowed_j = list(jurisdictions)
    if not sites and not allowed_j:
        return None
    for site in index.sites.values():
        if any(jurisdiction_allows(a, site.jurisdiction) for a in allowed_j if site.jurisdiction):
            sites.add(site.site_id)
    return frozenset(sites)


def quota_limit(quotas: Mapping[str, int], model: str) -> int | None:
    """A tenant's accelerator limit for a model (its ``*`` quota otherwise; None: none)."""
    if model in quotas:
        return quotas[model]
    return quotas.get(ANY_MODEL)


def check_admission(  # noqa: PLR0911 - one return per rejection reason, in order
    spec: JobSpec,
    index: CapacityIndex,
    quotas: Mapping[str, int] | None,
    key_sites: frozenset[str] | None,
) -> Rejection | None:
    """Why ``spec`` can never run at this factory, or None when it may (now or later).

    ``quotas`` is the tenant's quota table (None: unknown tenant); ``key_sites`` the
    sites where its dataset key may be used (None: no key or not known yet).
    """
    width, total = spec.accelerators_per_node, spec.accelerators
    if total % width:
        return Rejection(
            "invalid_shape",
            f"{total} accelerators do not split into gangs of {width} per node",
        )
    if quotas is None:
        return Rejection("unknown_tenant", f"tenant {spec.tenant} has no quota at this factory")
    known = [m for m in spec.models if index.model_sites(m)]
    if not known:
        return Rejection("unknown_model", f"no node has a model in {sorted(set(spec.models))}")
    sized = [m for m in known if _largest(index, m) >= width]
    if not sized:
        return Rejection(
            "invalid_shape",
            f"{width} accelerators per node exceed every {'/'.join(known)} node "
            f"(largest has {max(_largest(index, m) for m in known)})",
        )
    residency = eligible_sites(index, spec.allowed_sites, spec.allowed_jurisdictions)
    placeable = {
        m: index.model_sites(m) & residency if residency is not None else index.model_sites(m)
        for m in sized
    }
    if not any(placeable.values()):
        return Rejection(
            "no_allowed_site",
            f"no site allowed by sites {spec.allowed_sites} / jurisdictions "
            f"{spec.allowed_jurisdictions} has {'/'.join(sized)} nodes",
        )
    within_quota = [m for m in sized if (quota_limit(quotas, m) or 0) >= total]
    if not within_quota:
        return Rejection(
            "exceeds_quota",
            f"{total} accelerators exceed {spec.tenant}'s quota for {'/'.join(sized)}",
        )
    count = total // width
    fits = [
        m
        for m in within_quota
        if any(index.eligible_nodes(m, s, spec.tenant, width) >= count for s in placeable[m])
    ]
    if not fits:
        return Rejection(
            "exceeds_factory",
            f"{count} nodes x {width} accelerators is larger than any allowed site holds",
        )
    if key_sites is not None and not any(placeable[m] & key_sites for m in fits):
        return Rejection(
            "key_not_allowed",
            f"dataset key {spec.dataset_key_id} may not be used at any eligible site",
        )
    return None


def _largest(index: CapacityIndex, model: str) -> int:
    sizes = [size for (m, _), cell in index.census.items() if m == model for (_, size) in cell]
    return max(sizes, default=0)


def queue_key(job: Job, usage: Mapping[str, int]) -> tuple[int, int, int]:
    """Service order: priority class, then the tenant's accelerators in use, then FIFO."""
    return (job.rank, usage.get(job.tenant, 0), job.seq)
