"""The scheduler's state machine: capacity, active jobs, queue, quotas, key holds.

Pure and synchronous: every operation takes ``now`` and returns the *outcomes* it
caused (placed, queued, requeued, preempted, ...), which the handlers persist and turn
into events in the same transaction. Rules:

- **Admission now or later.** A new job is placed at once when it fits and no
  reservation forbids it (see backfill); otherwise it is queued with its reason. A
  ``critical`` job that does not fit may preempt ``preemptible`` jobs (see
  ``_preempt_for``).
- **Queue order.** Priority class (critical, standard, preemptible), then fair share
  (the tenant with the fewest accelerators in use goes next, recomputed as the pass
  places jobs), then FIFO by submission.
- **Backfill (EASY).** In a pass, the first job of each priority order that waits for
  *capacity* (not quota or keys) on a model reserves that model: a later job of the
  same or lower priority may still take that model's free accelerators only if its
  expected runtime ends before the reservation's *shadow time* (when enough running
  jobs of the model are expected to have ended for the reserved job to fit). Jobs
  asking for other models are never held back.
- **Preemption.** A critical job that cannot fit is placed as if every preemptible job
  on its models and sites were gone; the preemptible jobs on the nodes it then takes
  are preempted and requeued (reason ``preempted``), and nothing else moves.
- **Losing nodes.** A node that fails, drains, goes to maintenance, is retired or
  changes hardware requeues every job on it (the whole gang is released); such
  requeues count against ``max_requeues``, beyond which the job is abandoned.
  Preemption and key revocation requeue without counting.
- **Keys.** A revoked / disabled / destroyed dataset key holds the tenant's jobs
  using it: running ones are preempted and requeued (``key_revoked``), queued ones
  wait (``key_unusable``) until the key is enabled again.
"""

from __future__ import annotations

import bisect
import datetime as dt
import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from aifactory.scheduling.capacity import CapacityIndex
from aifactory.scheduling.domain import PRIORITY_RANK, Job, quota_limit
from aifactory.scheduling.placement import Placement, place_exclusive, place_gang

LOSING_STATES = {
    "failed": "node_failed",
    "draining": "node_drained",
    "maintenance": "node_unavailable",
    "retired": "node_unavailable",
    "provisioning": "node_unavailable",
}
"""Node admin states whose jobs are requeued, and the requeue reason."""
ACTIVE = ("placed", "running")


@dataclass(frozen=True, slots=True)
class Placed:
    """A job got its gang."""

    job: Job


@dataclass(frozen=True, slots=True)
class Queued:
    """A new job waits (its reason is on the job)."""

    job: Job


@dataclass(frozen=True, slots=True)
class ReasonChanged:
    """A queued job's blocking reason changed (persisted, no event)."""

    job: Job


@dataclass(frozen=True, slots=True)
class Requeued:
    """A placed or running job went back to the queue."""

    job: Job
    attempt: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Preempted:
    """A job lost its accelerators (to a critical job, or to a key revocation)."""

    job: Job
    attempt: int
    by_job_id: str | None
    node_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Abandoned:
    """A job lost its nodes more often than the retry limit allows."""

    job: Job
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """A job was cancelled."""

    job: Job
    previous_state: str


@dataclass(frozen=True, slots=True)
class Started:
    """The workload reported a placed job started."""

    job: Job


@dataclass(frozen=True, slots=True)
class Ended:
    """The workload reported a job finished or failed (``job.state`` says which)."""

    job: Job


Outcome = (
    Placed | Queued | ReasonChanged | Requeued | Preempted | Abandoned | Cancelled | Started | Ended
)


@dataclass(frozen=True, slots=True)
class Reservation:
    """Capacity of a model held for an earlier job that waits for it (backfill rule)."""

    job_id: str
    rank: int
    shadow: dt.datetime | None
    """When the reserved job is expected to fit (None: not foreseeable, so it holds
    nothing back: running jobs ending would not make it fit)."""


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why a job cannot be placed now."""

    reason: str
    message: str


class Engine:
    """Capacity, jobs and queue of one scheduler (see module docstring)."""

    def __init__(self, *, max_requeues: int = 3) -> None:
        self.index = CapacityIndex()
        self.jobs: dict[str, Job] = {}
        self.quotas: dict[str, dict[str, int]] = {}
        self.holds: set[tuple[str, str]] = set()
        self.usage: dict[str, int] = {}
        self.model_usage: dict[tuple[str, str], int] = {}
        self.queues: dict[tuple[int, str], list[tuple[int, str]]] = {}
        self.reservations: dict[str, Reservation] = {}
        self.pass_pending = False
        self.next_seq = 1
        self.max_requeues = max_requeues
        self.preemptible: dict[str, set[str]] = {}
        """model -> ids of placed or running preemptible jobs on it."""
        self._sites_cache: dict[tuple[object, ...], list[str]] = {}
        self._sites_version = -1

    # ------------------------------------------------------------------ queue
    def _enqueue(self, job: Job, reason: str, message: str, now: dt.datetime) -> None:
        job.state, job.reason, job.message = "queued", reason, message
        job.waiting_since = now
        bisect.insort(self.queues.setdefault((job.rank, job.tenant), []), (job.seq, job.job_id))

    def _dequeue(self, job: Job) -> None:
        queue = self.queues.get((job.rank, job.tenant), [])
        at = bisect.bisect_left(queue, (job.seq, job.job_id))
        if at < len(queue) and queue[at] == (job.seq, job.job_id):
            del queue[at]
        if not queue:
            self.queues.pop((job.rank, job.tenant), None)

    @property
    def queued(self) -> int:
        """How many jobs wait."""
        return sum(len(q) for q in self.queues.values())

    def request_pass(self) -> None:
        """Capacity or rules changed: the queue must be reconsidered (if anything waits)."""
        if self.queues:
            self.pass_pending = True

    def queue_order(self) -> list[Job]:
        """Waiting jobs in service order (priority, tenant's usage now, FIFO)."""
        waiting = [self.jobs[job_id] for q in self.queues.values() for _, job_id in q]
        return sorted(waiting, key=lambda j: (j.rank, self.usage.get(j.tenant, 0), j.seq))

    # ------------------------------------------------------------------ allocation
    def _apply(self, job: Job, placement: Placement, now: dt.datetime) -> Placed:
        job.masks = self.index.allocate(
            job.job_id, job.tenant, [(n, placement.width) for n in placement.node_ids]
        )
        if placement.held:
            self.index.hold(job.job_id, placement.held)
        job.state, job.reason, job.message = "placed", "", ""
        job.placement, job.placed_at = placement, now
        job.attempt += 1
        job.waiting_since = None
        self._use(job, placement.model, job.total)
        return Placed(job)

    def _use(self, job: Job, model: str, delta: int) -> None:
        if job.priority == "preemptible":
            holders = self.preemptible.setdefault(model, set())
            if delta > 0:
                holders.add(job.job_id)
            else:
                holders.discard(job.job_id)
        self.usage[job.tenant] = self.usage.get(job.tenant, 0) + delta
        key = (job.tenant, model)
        self.model_usage[key] = self.model_usage.get(key, 0) + delta

    def _free(self, job: Job) -> None:
        placement = job.placement
        if placement is None:
            return
        self.index.release(job.job_id, list(job.masks))
        if placement.held:
            self.index.unhold(job.job_id, placement.held)
        self._use(job, placement.model, -job.total)
        job.placement, job.masks, job.placed_at = None, {}, None

    def restore(self, job: Job) -> bool:
        """Re-apply a loaded job's allocation exactly (restart); False if it no longer fits."""
        self.jobs[job.job_id] = job
        self.next_seq = max(self.next_seq, job.seq + 1)
        if job.state == "queued":
            bisect.insort(self.queues.setdefault((job.rank, job.tenant), []), (job.seq, job.job_id))
            return True
        placement = job.placement
        assert placement is not None
        try:
            self.index.allocate_exact(job.job_id, job.tenant, job.masks)
        except (ValueError, KeyError):
            job.placement, job.masks = None, {}
            return False
        if placement.held:
            self.index.hold(job.job_id, [n for n in placement.held if n in self.index.nodes])
        self._use(job, placement.model, job.total)
        return True

    # ------------------------------------------------------------------ decisions
    def _allowed(self, job: Job, site_id: str) -> bool:
        site = self.index.sites.get(site_id)
        return job.may_run_at(site_id, site.jurisdiction if site is not None else "")

    def _sites_for(self, job: Job, model: str) -> list[str]:
        """Sites with ``model`` nodes where the job's residency and key allow it (cached)."""
        version = self.index.topology_version
        if version != self._sites_version:
            self._sites_cache.clear()
            self._sites_version = version
        key = (model, job.allowed_sites, job.jurisdictions, job.key_sites)
        cached = self._sites_cache.get(key)
        if cached is None:
            sites = {s for s in self.index.model_sites(model) if self._allowed(job, s)}
            if job.key_sites is not None:
                sites &= job.key_sites
            cached = self._sites_cache[key] = sorted(sites)
        return cached

    def _find(
        self, job: Job, models: Iterable[str], memo: dict[tuple[object, ...], bool] | None
    ) -> Placement | None:
        """The best placement over the allowed models (in preference order) and sites."""
        place = place_exclusive if job.isolation == "exclusive-domain" else place_gang
        for model in models:
            best: Placement | None = None
            for site in self._sites_for(job, model):
                key = (job.tenant, model, site, job.width, job.count, job.isolation)
                if memo is not None and key in memo:
                    continue
                found = place(self.index, job.tenant, model, site, job.width, job.count)
                if found is None:
                    if memo is not None:
                        memo[key] = False
                    continue
                rank = (found.racks_spanned, found.domains_spanned, site)
                if best is None or rank < (best.racks_spanned, best.domains_spanned, best.site_id):
                    best = found
                if (found.racks_spanned, found.domains_spanned) == (1, 1):
                    break  # nothing spans less; sites are tried in id order
            if best is not None:
                return best
        return None

    def _consider(
        self,
        job: Job,
        now: dt.datetime,
        reservations: dict[str, Reservation],
        memo: dict[tuple[object, ...], bool] | None,
    ) -> Placement | Blocked:
        if job.key_id is not None and (job.tenant, job.key_id) in self.holds:
            return Blocked("key_unusable", f"dataset key {job.key_id} is revoked or disabled")
        if job.key_pending:
            return Blocked("key_check_pending", "the key service has not confirmed the dataset key")
        quotas = self.quotas.get(job.tenant, {})
        usable: list[str] = []
        over_quota: list[str] = []
        behind: list[str] = []
        for model in job.models:
            limit = quota_limit(quotas, model)
            if limit is None or self.model_usage.get((job.tenant, model), 0) + job.total > limit:
                over_quota.append(model)
                continue
            held = reservations.get(model)
            if held is not None and held.job_id != job.job_id and job.rank >= held.rank:
                ends = now + dt.timedelta(seconds=job.runtime_s)
                if held.shadow is not None and ends > held.shadow:
                    behind.append(f"{model} reserved for {held.job_id}")
                    continue
            usable.append(model)
        if not usable:
            if behind:
                return Blocked("waiting_behind", "; ".join(behind))
            in_use = {m: self.model_usage.get((job.tenant, m), 0) for m in over_quota}
            return Blocked(
                "quota",
                f"{job.total} more accelerators would exceed {job.tenant}'s quota "
                f"(in use: {', '.join(f'{m}={n}' for m, n in in_use.items())})",
            )
        found = self._find(job, usable, memo)
        if found is not None:
            return found
        return Blocked(
            "insufficient_capacity",
            f"no {job.count} x {job.width} {'/'.join(usable)} accelerators free"
            f"{' in whole NVLink domains' if job.isolation == 'exclusive-domain' else ''}"
            f" at allowed sites",
        )

    def _live_reservations(self) -> dict[str, Reservation]:
        return {
            m: r
            for m, r in self.reservations.items()
            if (held := self.jobs.get(r.job_id)) is not None and held.state == "queued"
        }

    def submit(self, job: Job, now: dt.datetime) -> list[Outcome]:
        """Track a new (admitted) job: place it now or queue it with its reason."""
        job.seq = self.next_seq
        self.next_seq += 1
        self.jobs[job.job_id] = job
        if self.pass_pending:
            self._enqueue(job, "scheduling_pending", "capacity changed; the next pass decides", now)
            return [Queued(job)]
        decision = self._consider(job, now, self._live_reservations(), None)
        if isinstance(decision, Placement):
            return [self._apply(job, decision, now)]
        if job.priority == "critical" and decision.reason == "insufficient_capacity":
            preempted = self._preempt_for(job, now)
            if preempted:
                return preempted
        self._enqueue(job, decision.reason, decision.message, now)
        if decision.reason == "insufficient_capacity":
            live = self._live_reservations()
            for model in job.models:
                held = live.get(model)
                if held is None or held.rank > job.rank:
                    self.reservations[model] = Reservation(
                        job.job_id, job.rank, self._shadow(job, model, now)
                    )
        return [Queued(job)]

    def schedule_pass(self, now: dt.datetime) -> list[Outcome]:
        """Walk the queue in service order, placing what fits (see module docstring)."""
        self.pass_pending = False
        reservations: dict[str, Reservation] = {}
        memo: dict[tuple[object, ...], bool] = {}
        failed_preemptions: set[tuple[object, ...]] = set()
        outcomes: list[Outcome] = []
        for rank in sorted(set(PRIORITY_RANK.values())):
            tenants = sorted(t for (r, t) in self.queues if r == rank)
            heap = [(self.usage.get(t, 0), t, 0) for t in tenants]
            heapq.heapify(heap)
            while heap:
                _, tenant, at = heapq.heappop(heap)
                queue = self.queues.get((rank, tenant))
                if queue is None or at >= len(queue):
                    continue
                job = self.jobs[queue[at][1]]
                decision = self._consider(job, now, reservations, memo)
                if isinstance(decision, Placement):
                    self._dequeue(job)
                    outcomes.append(self._apply(job, decision, now))
                elif (
                    job.priority == "critical"
                    and decision.reason == "insufficient_capacity"
                    and self._shape(job) not in failed_preemptions
                    and (preempted := self._preempt_for(job, now, dequeue=True))
                ):
                    outcomes.extend(preempted)
                    memo.clear()
                else:
                    if job.priority == "critical" and decision.reason == "insufficient_capacity":
                        failed_preemptions.add(self._shape(job))
                    if decision.reason == "insufficient_capacity":
                        for model in job.models:
                            if model not in reservations:
                                reservations[model] = Reservation(
                                    job.job_id, job.rank, self._shadow(job, model, now)
                                )
                    if (decision.reason, decision.message) != (job.reason, job.message):
                        job.reason, job.message = decision.reason, decision.message
                        outcomes.append(ReasonChanged(job))
                    at += 1
                if (rank, tenant) in self.queues and at < len(self.queues[(rank, tenant)]):
                    heapq.heappush(heap, (self.usage.get(tenant, 0), tenant, at))
        self.reservations = reservations
        return outcomes

    @staticmethod
    def _shape(job: Job) -> tuple[object, ...]:
        """What decides whether a job fits: jobs of the same shape fit or fail alike."""
        return (
            job.tenant,
            job.models,
            job.allowed_sites,
            job.jurisdictions,
            job.key_sites,
            job.width,
            job.count,
            job.isolation,
        )

    def _shadow(self, job: Job, model: str, now: dt.datetime) -> dt.datetime | None:
        """When enough of ``model`` is expected free for ``job`` (None: not foreseeable)."""
        sites = set(self._sites_for(job, model))
        free = sum(g.free_total for s in sites for g in self.index.groups_for(model, s, job.tenant))
        if free >= job.total:
            return now
        ends = sorted(
            (end, other.total)
            for other in self.jobs.values()
            if other.placement is not None
            and other.placement.model == model
            and other.placement.site_id in sites
            and (end := other.expected_end()) is not None
        )
        for end, total in ends:
            free += total
            if free >= job.total:
                return max(end, now)
        return None

    def _preempt_for(self, job: Job, now: dt.datetime, *, dequeue: bool = False) -> list[Outcome]:
        """Place a critical job by preempting preemptible ones, or return [] (nothing moves)."""
        victims_pool = sorted(
            (
                v
                for model in job.models
                for job_id in self.preemptible.get(model, ())
                if (v := self.jobs[job_id]).placement is not None
                and self._allowed(job, v.placement.site_id)
            ),
            key=lambda v: v.job_id,
        )
        if not victims_pool:
            return []
        for victim in victims_pool:
            self.index.release(victim.job_id, list(victim.masks))
            if victim.placement is not None and victim.placement.held:
                self.index.unhold(victim.job_id, victim.placement.held)
        usable = [
            m
            for m in job.models
            if (limit := quota_limit(self.quotas.get(job.tenant, {}), m)) is not None
            and self.model_usage.get((job.tenant, m), 0) + job.total <= limit
        ]
        found = self._find(job, usable, None)
        for victim in victims_pool:
            self.index.allocate_exact(victim.job_id, victim.tenant, victim.masks)
            if victim.placement is not None and victim.placement.held:
                self.index.hold(victim.job_id, victim.placement.held)
        if found is None:
            return []
        taken = set(found.node_ids) | set(found.held)
        outcomes: list[Outcome] = []
        for victim in victims_pool:
            assert victim.placement is not None
            touched = set(victim.masks) | set(victim.placement.held)
            if not touched & taken:
                continue
            outcomes.append(
                Preempted(victim, victim.attempt, job.job_id, tuple(sorted(victim.masks)))
            )
            outcomes.extend(
                self._requeue(
                    victim,
                    "preempted",
                    f"preempted by critical job {job.job_id}",
                    now,
                    counts=False,
                )
            )
        if dequeue:
            self._dequeue(job)
        outcomes.append(self._apply(job, found, now))
        return outcomes

    def requeue_lost(self, job: Job, now: dt.datetime) -> list[Outcome]:
        """A job whose stored allocation no longer exists (restart): back to the queue."""
        attempt = job.attempt
        job.placement, job.masks, job.placed_at = None, {}, None
        self._enqueue(
            job, "scheduling_pending", "its nodes changed while the scheduler was down", now
        )
        self.pass_pending = True
        return [Requeued(job, attempt, "node_unavailable", "allocation lost across a restart")]

    # ------------------------------------------------------------------ losing placements
    def _requeue(
        self, job: Job, reason: str, message: str, now: dt.datetime, *, counts: bool
    ) -> list[Outcome]:
        attempt = job.attempt
        self._free(job)
        if counts:
            job.requeues += 1
            if job.requeues > self.max_requeues:
                job.state = "abandoned"
                job.reason, job.message = "retries_exhausted", message
                del self.jobs[job.job_id]
                self.request_pass()
                return [
                    Abandoned(
                        job,
                        attempt,
                        f"lost its nodes {job.requeues} times "
                        f"(limit {self.max_requeues}): {message}",
                    )
                ]
        queue_reason = "preempted" if reason in ("preempted",) else "scheduling_pending"
        if reason == "key_revoked":
            queue_reason = "key_unusable"
        self._enqueue(job, queue_reason, message, now)
        self.pass_pending = True
        return [Requeued(job, attempt, reason, message)]

    def _requeue_node(
        self,
        node_id: str,
        reason: str,
        message: str,
        now: dt.datetime,
        *,
        counts: bool,
        only_other_than: str | None = None,
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for job_id in list(self.index.jobs_on(node_id)):
            job = self.jobs.get(job_id)
            if job is None or job.state not in ACTIVE:
                continue
            if only_other_than is not None and job.tenant == only_other_than:
                continue
            if (
                job.placement is not None
                and node_id not in job.masks
                and node_id in job.placement.held
            ):
                continue  # a held but unused node of an exclusive domain: the job runs on
            outcomes.extend(self._requeue(job, reason, message, now, counts=counts))
        return outcomes

    # ------------------------------------------------------------------ inventory
    def upsert_node(
        self,
        node_id: str,
        *,
        site_id: str,
        rack_id: str,
        model: str,
        capacity: int,
        state: str,
        dedicated: str | None,
        now: dt.datetime,
    ) -> list[Outcome]:
        """A node appeared or changed; jobs on it move off if its hardware changed."""
        outcomes: list[Outcome] = []
        node = self.index.nodes.get(node_id)
        if node is not None and (node.model, node.capacity, node.rack_id) != (
            model,
            capacity,
            rack_id,
        ):
            outcomes += self._requeue_node(
                node_id, "node_changed", f"{node_id} hardware or rack changed", now, counts=False
            )
        if node is not None and node.dedicated != dedicated:
            outcomes += self.set_dedication(node_id, dedicated, now)
        self.index.upsert_node(
            node_id,
            site_id=site_id,
            rack_id=rack_id,
            model=model,
            capacity=capacity,
            state=node.state if node is not None else state,
            dedicated=dedicated,
        )
        outcomes += self.set_node_state(node_id, state, "", now)
        self.request_pass()
        return outcomes

    def set_node_state(self, node_id: str, state: str, why: str, now: dt.datetime) -> list[Outcome]:
        """A node's admin state changed: losing states requeue its jobs."""
        node = self.index.nodes.get(node_id)
        if node is None:
            return []
        previous = node.state
        self.index.set_state(node_id, state)
        outcomes: list[Outcome] = []
        if state in LOSING_STATES and node.jobs:
            message = f"{node_id} is {state}" + (f": {why}" if why else "")
            outcomes = self._requeue_node(node_id, LOSING_STATES[state], message, now, counts=True)
        if state != previous:
            self.request_pass()
        return outcomes

    def set_dedication(self, node_id: str, tenant: str | None, now: dt.datetime) -> list[Outcome]:
        """A node's dedication changed: other tenants' jobs on it move off."""
        if node_id not in self.index.nodes:
            return []
        outcomes: list[Outcome] = []
        if tenant is not None:
            outcomes = self._requeue_node(
                node_id,
                "node_changed",
                f"{node_id} was dedicated to {tenant}",
                now,
                counts=False,
                only_other_than=tenant,
            )
        self.index.set_dedication(node_id, tenant)
        self.request_pass()
        return outcomes

    def set_health(self, node_id: str, *, healthy: bool) -> None:
        """A node's health verdict: unhealthy nodes take no new work."""
        if node_id in self.index.nodes:
            self.index.set_health(node_id, healthy=healthy)
            if healthy:
                self.request_pass()

    # ------------------------------------------------------------------ commands and reports
    def set_quota(self, tenant: str, model: str, accelerators: int) -> dict[str, int]:
        """Set a tenant's quota for a model; returns its quota table."""
        limits = self.quotas.setdefault(tenant, {})
        limits[model] = accelerators
        self.request_pass()
        return dict(limits)

    def cancel(self, job: Job) -> list[Outcome]:
        """Cancel an active job, freeing what it holds."""
        previous = job.state
        if previous == "queued":
            self._dequeue(job)
        else:
            self._free(job)
            self.request_pass()
        job.state = "cancelled"
        del self.jobs[job.job_id]
        return [Cancelled(job, previous)]

    def report_started(self, job: Job, attempt: int | None) -> list[Outcome]:
        """The workload started a placed job (stale reports of earlier placements are ignored)."""
        if job.state != "placed" or (attempt is not None and attempt != job.attempt):
            return []
        job.state = "running"
        return [Started(job)]

    def report_ended(self, job: Job, attempt: int | None, state: str) -> list[Outcome]:
        """The workload ended a job (``finished`` or ``failed``); its accelerators free."""
        if job.state not in ACTIVE or (attempt is not None and attempt != job.attempt):
            return []
        self._free(job)
        job.state = state
        del self.jobs[job.job_id]
        self.request_pass()
        return [Ended(job)]

    def hold_key(self, tenant: str, key_id: str, why: str, now: dt.datetime) -> list[Outcome]:
        """A dataset key became unusable: preempt and requeue the jobs using it."""
        self.holds.add((tenant, key_id))
        outcomes: list[Outcome] = []
        for job in sorted(self.jobs.values(), key=lambda j: j.job_id):
            if job.tenant != tenant or job.key_id != key_id:
                continue
            if job.state in ACTIVE:
                outcomes.append(Preempted(job, job.attempt, None, tuple(sorted(job.masks))))
                outcomes += self._requeue(
                    job, "key_revoked", f"dataset key {key_id} {why}", now, counts=False
                )
            elif job.reason != "key_unusable":
                job.reason, job.message = "key_unusable", f"dataset key {key_id} {why}"
                outcomes.append(ReasonChanged(job))
        return outcomes

    def lift_key(self, tenant: str, key_id: str) -> None:
        """A dataset key is usable again."""
        self.holds.discard((tenant, key_id))
        self.request_pass()
