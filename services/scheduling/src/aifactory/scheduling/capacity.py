"""The capacity view: sites, racks, NVLink domains, nodes and who holds which accelerator.

Pure and synchronous. Nodes arrive from inventory's events (through the handlers);
jobs' allocations are applied with ``allocate`` and ``release``. Every schedulable
node sits in exactly one *group* ``(model, site, owner)`` where the owner is the
tenant the node is dedicated to, else the tenant whose jobs run on it, else ``""``
(the shared pool): a job of tenant T may only use groups owned by T or ``""``, which
is how a node never holds two tenants' jobs. Each group indexes its nodes by free
accelerators (a heap per free count) and, per gang width ``p`` asked for so far, how
many nodes with at least ``p`` free each NVLink domain and each rack has, with
domains and racks bucketed by that count. A placement decision then looks at a few
buckets instead of scanning the factory (see placement.py).

A node's NVLink domain: racks declare ``nvlink_domain_size`` accelerators per domain;
the rack's nodes, in id order, are grouped ``domain_size // node_accelerators`` to a
domain (``<rack>:<k>``); a rack without a domain size gives each node its own.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

SHARED = ""
"""The owner of the shared pool's groups."""
SCHEDULABLE_STATES = frozenset({"available"})


@dataclass(slots=True)
class Site:
    """A site and the jurisdiction governing its data."""

    site_id: str
    jurisdiction: str = ""


@dataclass(slots=True)
class Rack:
    """A rack: its site, its NVLink domain size and its node ids (sorted)."""

    rack_id: str
    site_id: str
    domain_size: int = 0
    node_ids: list[str] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class NodeSlot:
    """One node's hardware, admin state and current allocations."""

    node_id: str
    site_id: str
    rack_id: str
    model: str
    capacity: int
    state: str = "available"
    healthy: bool = True
    dedicated: str | None = None
    domain: str = ""
    free_mask: int = 0
    free: int = 0
    """Free accelerators (the bits set in ``free_mask``)."""
    jobs: dict[str, int] = field(default_factory=dict)
    """job id -> bit mask of the accelerator indices it holds here."""
    occupant: str | None = None
    held_by: str | None = None
    """The exclusive-domain job holding this node's whole domain."""
    group: tuple[str, str, str] | None = None

    def set_mask(self, mask: int) -> None:
        """Set the free accelerators."""
        self.free_mask = mask
        self.free = mask.bit_count()

    @property
    def schedulable(self) -> bool:
        """Whether new work may be placed here (available, healthy, not held)."""
        return self.state in SCHEDULABLE_STATES and self.healthy and self.held_by is None

    @property
    def owner(self) -> str:
        """Who may use this node's free accelerators (a tenant, or SHARED)."""
        return self.dedicated or self.occupant or SHARED

    def sort_key(self) -> tuple[str, str]:
        """Static order of nodes: by rack, then id."""
        return (self.rack_id, self.node_id)


class _Counts:
    """For one gang width p: nodes with >= p free per domain and per rack, bucketed."""

    __slots__ = ("dom_bucket", "dom_count", "rack_bucket", "rack_count", "total")

    def __init__(self) -> None:
        self.dom_count: dict[str, int] = {}
        self.dom_bucket: dict[int, set[str]] = {}
        self.rack_count: dict[str, int] = {}
        self.rack_bucket: dict[int, set[str]] = {}
        self.total = 0

    @staticmethod
    def _move(count: dict[str, int], bucket: dict[int, set[str]], key: str, delta: int) -> None:
        old = count.get(key, 0)
        new = old + delta
        if old:
            members = bucket[old]
            members.discard(key)
            if not members:
                del bucket[old]
        if new:
            count[key] = new
            bucket.setdefault(new, set()).add(key)
        else:
            count.pop(key, None)

    def adjust(self, node: NodeSlot, delta: int) -> None:
        self._move(self.dom_count, self.dom_bucket, node.domain, delta)
        self._move(self.rack_count, self.rack_bucket, node.rack_id, delta)
        self.total += delta


class Group:
    """The schedulable nodes of one (model, site, owner), indexed by free accelerators."""

    __slots__ = ("by_free", "free_total", "key", "nodes", "widths")

    def __init__(self, key: tuple[str, str, str]) -> None:
        self.key = key
        self.nodes: dict[str, NodeSlot] = {}
        self.by_free: dict[int, list[tuple[str, str]]] = {}
        self.widths: dict[int, _Counts] = {}
        self.free_total = 0

    def add(self, node: NodeSlot) -> None:
        free = node.free
        self.nodes[node.node_id] = node
        self.free_total += free
        heapq.heappush(self.by_free.setdefault(free, []), node.sort_key())
        for width, counts in self.widths.items():
            if free >= width:
                counts.adjust(node, 1)

    def remove(self, node: NodeSlot, free: int | None = None) -> None:
        free = node.free if free is None else free
        del self.nodes[node.node_id]
        self.free_total -= free
        for width, counts in self.widths.items():
            if free >= width:
                counts.adjust(node, -1)

    def update_free(self, node: NodeSlot, before: int) -> None:
        """A member's free accelerators changed from ``before`` to ``node.free``."""
        after = node.free
        self.free_total += after - before
        heapq.heappush(self.by_free.setdefault(after, []), node.sort_key())
        for width, counts in self.widths.items():
            was, now = before >= width, after >= width
            if was != now:
                counts.adjust(node, 1 if now else -1)

    def counts(self, width: int) -> _Counts:
        """The per-domain / per-rack counts for gang width ``width`` (built on first use)."""
        counts = self.widths.get(width)
        if counts is None:
            counts = self.widths[width] = _Counts()
            for node in self.nodes.values():
                if node.free >= width:
                    counts.adjust(node, 1)
        return counts

    def best_single(self, width: int, max_free: int) -> NodeSlot | None:
        """The node with the fewest free accelerators >= width (then rack, id), if any."""
        for free in range(width, max_free + 1):
            heap = self.by_free.get(free)
            while heap:
                _, node_id = heap[0]
                node = self.nodes.get(node_id)
                if node is not None and node.free == free:
                    return node
                heapq.heappop(heap)  # stale entry: the node moved or left
        return None

    def compact(self) -> None:
        """Drop stale heap entries once they outnumber live ones."""
        entries = sum(len(h) for h in self.by_free.values())
        if entries <= 2 * len(self.nodes) + 64:
            return
        rebuilt: dict[int, list[tuple[str, str]]] = {}
        for node in self.nodes.values():
            rebuilt.setdefault(node.free, []).append(node.sort_key())
        for heap in rebuilt.values():
            heapq.heapify(heap)
        self.by_free = rebuilt


class CapacityIndex:
    """The factory's topology and free capacity (see module docstring)."""

    def __init__(self) -> None:
        self.sites: dict[str, Site] = {}
        self.racks: dict[str, Rack] = {}
        self.nodes: dict[str, NodeSlot] = {}
        self.groups: dict[tuple[str, str, str], Group] = {}
        self.domains: dict[str, list[str]] = {}
        """domain id -> its node ids (sorted)."""
        self.max_capacity = 0
        self.census: dict[tuple[str, str], dict[tuple[str, int], int]] = {}
        """(model, site) -> (dedicated tenant or SHARED, node size) -> non-retired nodes."""
        self._changes = 0
        self.topology_version = 0
        """Bumped whenever sites, jurisdictions or the per-site census change."""

    def _count(self, node: NodeSlot, delta: int) -> None:
        self.topology_version += 1
        if node.state == "retired":
            return
        cell = self.census.setdefault((node.model, node.site_id), {})
        key = (node.dedicated or SHARED, node.capacity)
        cell[key] = cell.get(key, 0) + delta
        if not cell[key]:
            del cell[key]
            if not cell:
                del self.census[(node.model, node.site_id)]

    # ------------------------------------------------------------------ topology
    def upsert_site(self, site_id: str, jurisdiction: str) -> None:
        """Add a site or change its jurisdiction."""
        self.topology_version += 1
        site = self.sites.get(site_id)
        if site is None:
            self.sites[site_id] = Site(site_id, jurisdiction)
        else:
            site.jurisdiction = jurisdiction

    def upsert_rack(self, rack_id: str, site_id: str, domain_size: int) -> None:
        """Add a rack or change its NVLink domain size (its nodes' domains follow)."""
        rack = self.racks.get(rack_id)
        if rack is None:
            self.racks[rack_id] = Rack(rack_id, site_id, domain_size)
            return
        rack.site_id = site_id
        if rack.domain_size != domain_size:
            rack.domain_size = domain_size
            self._assign_domains(rack)

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
    ) -> None:
        """Add a node or change its hardware / placement (call only without allocations
        when the model, capacity or rack changes)."""
        rack = self.racks.get(rack_id)
        if rack is None:
            rack = self.racks[rack_id] = Rack(rack_id, site_id)
        node = self.nodes.get(node_id)
        if node is None:
            node = NodeSlot(node_id, site_id, rack_id, model, capacity, state, dedicated=dedicated)
            node.set_mask((1 << capacity) - 1)
            self.nodes[node_id] = node
        else:
            self._count(node, -1)
            self._ungroup(node)
            if node.rack_id != rack_id:
                old = self.racks.get(node.rack_id)
                if old is not None and node_id in old.node_ids:
                    old.node_ids.remove(node_id)
                    self._assign_domains(old)
            used = 0
            for mask in node.jobs.values():
                used |= mask
            node.site_id, node.rack_id, node.model = site_id, rack_id, model
            node.capacity, node.state, node.dedicated = capacity, state, dedicated
            node.set_mask(((1 << capacity) - 1) & ~used)
        self._count(node, 1)
        if node_id not in rack.node_ids:
            rack.node_ids.append(node_id)
            rack.node_ids.sort()
        self.max_capacity = max(self.max_capacity, capacity)
        self._assign_domains(rack)
        self._regroup(node)

    def set_state(self, node_id: str, state: str) -> None:
        """Change a node's admin state."""
        node = self.nodes[node_id]
        self._count(node, -1)
        node.state = state
        self._count(node, 1)
        self._regroup(node)

    def set_health(self, node_id: str, *, healthy: bool) -> None:
        """Record a node's health verdict (unhealthy nodes take no new work)."""
        node = self.nodes[node_id]
        node.healthy = healthy
        self._regroup(node)

    def set_dedication(self, node_id: str, tenant: str | None) -> None:
        """Dedicate a node to a tenant (None: shared pool)."""
        node = self.nodes[node_id]
        self._count(node, -1)
        node.dedicated = tenant
        self._count(node, 1)
        self._regroup(node)

    def _assign_domains(self, rack: Rack) -> None:
        for index, node_id in enumerate(rack.node_ids):
            node = self.nodes.get(node_id)
            if node is None:
                continue
            per_domain = max(1, rack.domain_size // node.capacity) if rack.domain_size else 1
            domain = f"{rack.rack_id}:{index // per_domain}"
            if domain != node.domain:
                grouped = node.group is not None
                if grouped:
                    self._ungroup(node)
                if node.domain:
                    members = self.domains.get(node.domain, [])
                    if node_id in members:
                        members.remove(node_id)
                    if not members:
                        self.domains.pop(node.domain, None)
                node.domain = domain
                members = self.domains.setdefault(domain, [])
                members.append(node_id)
                members.sort()
                if grouped:
                    self._regroup(node)

    # ------------------------------------------------------------------ groups
    def _ungroup(self, node: NodeSlot) -> None:
        if node.group is not None:
            self.groups[node.group].remove(node)
            node.group = None

    def _ungroup_with(self, node: NodeSlot, free: int) -> None:
        """Remove ``node`` from its group as if it still had ``free`` accelerators free."""
        assert node.group is not None
        self.groups[node.group].remove(node, free)
        node.group = None

    def _regroup(self, node: NodeSlot) -> None:
        """Put ``node`` in the group it belongs to now (or none if unschedulable)."""
        want = (node.model, node.site_id, node.owner) if node.schedulable else None
        if node.group == want:
            return
        self._ungroup(node)
        if want is not None:
            group = self.groups.get(want)
            if group is None:
                group = self.groups[want] = Group(want)
            group.add(node)
            node.group = want

    def _refree(self, node: NodeSlot, mask: int) -> None:
        """Set a node's free mask, keeping its group's counts right."""
        before = node.free
        key = node.group
        node.set_mask(mask)
        want = (node.model, node.site_id, node.owner) if node.schedulable else None
        if key is not None and key == want:
            self.groups[key].update_free(node, before)
        else:
            if key is not None:
                self._ungroup_with(node, before)
            self._regroup(node)
        self._changes += 1
        if self._changes % 4096 == 0:
            for group in self.groups.values():
                group.compact()

    # ------------------------------------------------------------------ allocations
    def allocate(
        self, job_id: str, tenant: str, wants: Iterable[tuple[str, int]]
    ) -> dict[str, int]:
        """Take ``count`` free accelerators (lowest indices) on each node; returns the masks."""
        taken: dict[str, int] = {}
        nodes = self.nodes
        for node_id, count in wants:
            node = nodes[node_id]
            if node.free < count or node.occupant not in (None, tenant):
                raise ValueError(f"{node_id} cannot take {count} accelerators for {tenant}")
            mask = 0
            remaining = node.free_mask
            for _ in range(count):
                low = remaining & -remaining
                mask |= low
                remaining ^= low
            taken[node_id] = mask
        for node_id, mask in taken.items():
            node = nodes[node_id]
            node.jobs[job_id] = mask
            node.occupant = tenant
            self._refree(node, node.free_mask & ~mask)
        return taken

    def allocate_exact(self, job_id: str, tenant: str, masks: dict[str, int]) -> None:
        """Give ``job_id`` exactly these accelerator masks (all free, else ValueError)."""
        for node_id, mask in masks.items():
            node = self.nodes.get(node_id)
            if node is None or node.free_mask & mask != mask:
                raise ValueError(f"accelerators {mask:#x} of {node_id} are not free")
            if node.occupant not in (None, tenant) or node.dedicated not in (None, tenant):
                raise ValueError(f"{node_id} belongs to another tenant")
        for node_id, mask in masks.items():
            node = self.nodes[node_id]
            node.jobs[job_id] = mask
            node.occupant = tenant
            self._refree(node, node.free_mask & ~mask)

    def release(self, job_id: str, node_ids: Iterable[str]) -> None:
        """Free what ``job_id`` holds on these nodes (unknown nodes are skipped)."""
        for node_id in node_ids:
            node = self.nodes.get(node_id)
            if node is None:
                continue
            mask = node.jobs.pop(job_id, 0)
            if not node.jobs:
                node.occupant = None
            self._refree(node, node.free_mask | mask)

    def hold(self, job_id: str, node_ids: Iterable[str]) -> None:
        """Reserve whole nodes (an exclusive-domain job's domains) for ``job_id``."""
        for node_id in node_ids:
            node = self.nodes[node_id]
            node.held_by = job_id
            self._regroup(node)

    def unhold(self, job_id: str, node_ids: Iterable[str]) -> None:
        """Give back nodes held by ``job_id``."""
        for node_id in node_ids:
            node = self.nodes.get(node_id)
            if node is not None and node.held_by == job_id:
                node.held_by = None
                self._regroup(node)

    # ------------------------------------------------------------------ reading
    def groups_for(self, model: str, site_id: str, tenant: str) -> list[Group]:
        """The groups a tenant's job may use at a site: its own first, then the shared pool."""
        found = []
        for owner in (tenant, SHARED):
            group = self.groups.get((model, site_id, owner))
            if group is not None and group.nodes:
                found.append(group)
        return found

    def jobs_on(self, node_id: str) -> Iterator[str]:
        """Job ids holding accelerators on (or holding) a node."""
        node = self.nodes.get(node_id)
        if node is None:
            return
        yield from sorted(node.jobs)
        if node.held_by is not None and node.held_by not in node.jobs:
            yield node.held_by

    def model_sites(self, model: str) -> set[str]:
        """Sites that have at least one (non-retired) node of ``model``."""
        return {site for (m, site) in self.census if m == model}

    def eligible_nodes(self, model: str, site_id: str, tenant: str, width: int) -> int:
        """Non-retired nodes of a model at a site that could ever take a ``width``-wide
        share of a gang for ``tenant`` (its own and shared nodes, large enough)."""
        cell = self.census.get((model, site_id), {})
        return sum(
            count
            for (owner, size), count in cell.items()
            if size >= width and owner in (tenant, SHARED)
        )
