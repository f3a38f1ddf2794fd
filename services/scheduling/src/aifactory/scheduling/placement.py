"""Gang placement: where a whole gang of ``count`` nodes x ``width`` accelerators fits.

Pure and synchronous, over a ``CapacityIndex``. For one model at one site and one
tenant (its own groups and the shared pool), the rule is, in order:

1. all or nothing: either every member of the gang gets a node or nothing is chosen;
2. fewest NVLink domains / racks spanned: one domain if any can take the gang, else
   one rack, else as few racks as possible (largest racks first, the last one the
   smallest that still fits);
3. packing that keeps whole domains, racks and nodes free: among units that fit, the
   one with the fewest suitable nodes; among nodes, those with the fewest free
   accelerators (a partly used node before an empty one);
4. deterministic: every tie is broken by id, never by history.

``exclusive-domain`` gangs take whole NVLink domains whose nodes are all free and
hold every node of those domains. The caller chooses the model and site order and
allocates the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aifactory.scheduling.capacity import CapacityIndex, Group, NodeSlot


@dataclass(frozen=True, slots=True)
class Placement:
    """A gang's nodes (each takes ``width`` accelerators), and for exclusive-domain the
    whole domains' nodes held."""

    model: str
    site_id: str
    node_ids: tuple[str, ...]
    width: int
    held: tuple[str, ...] = ()
    rack_ids: tuple[str, ...] = ()
    """The rack of each node in ``node_ids`` (same order)."""
    racks_spanned: int = 1
    domains_spanned: int = 1


def _best_unit(groups: list[Group], width: int, need: int, *, racks: bool) -> str | None:
    """The domain (or rack) with the fewest suitable nodes that still has ``need`` (then id)."""
    counts = [g.counts(width) for g in groups]
    buckets = [c.rack_bucket if racks else c.dom_bucket for c in counts]
    if len(groups) == 1:
        bucket = buckets[0]
        for size in sorted(k for k in bucket if k >= need):
            return min(bucket[size])
        return None
    own = counts[0].rack_count if racks else counts[0].dom_count
    shared = counts[1].rack_count if racks else counts[1].dom_count
    best: tuple[int, str] | None = None
    for unit, count in own.items():
        total = count + shared.get(unit, 0)
        if total >= need and (best is None or (total, unit) < best):
            best = (total, unit)
    shared_bucket = buckets[1]
    for size in sorted(k for k in shared_bucket if k >= need):
        if best is not None and size > best[0]:
            break
        alone = [u for u in shared_bucket[size] if u not in own]
        if alone:
            candidate = (size, min(alone))
            if best is None or candidate < best:
                best = candidate
            break
    return best[1] if best is not None else None


def _suitable(
    index: CapacityIndex, node_ids: Iterable[str], keys: set[object], width: int
) -> list[NodeSlot]:
    nodes = (index.nodes[n] for n in node_ids)
    return [n for n in nodes if n.group in keys and n.free >= width]


def _pick_in_rack(nodes: list[NodeSlot], need: int) -> list[NodeSlot]:
    """``need`` nodes of one rack spanning the fewest domains, fullest nodes first."""
    by_domain: dict[str, list[NodeSlot]] = {}
    for node in nodes:
        by_domain.setdefault(node.domain, []).append(node)
    ordered = sorted(by_domain.items(), key=lambda item: (-len(item[1]), item[0]))
    # the last domain used is the smallest that completes the gang, when one does
    chosen: list[NodeSlot] = []
    remaining = need
    pool = list(ordered)
    while remaining > 0 and pool:
        fitting = [
            (len(members), dom, members) for dom, members in pool if len(members) >= remaining
        ]
        if fitting:
            _, _, members = min(fitting, key=lambda f: (f[0], f[1]))
            chosen.extend(sorted(members, key=lambda n: (n.free, n.node_id))[:remaining])
            return chosen
        _, members = pool.pop(0)
        chosen.extend(sorted(members, key=lambda n: (n.free, n.node_id)))
        remaining -= len(members)
    return chosen if remaining <= 0 else []


def _spans(nodes: Iterable[NodeSlot]) -> tuple[int, int]:
    listed = list(nodes)
    return len({n.rack_id for n in listed}), len({n.domain for n in listed})


def _placement(
    model: str, site_id: str, width: int, nodes: list[NodeSlot], held: tuple[str, ...] = ()
) -> Placement:
    racks, domains = _spans(nodes)
    return Placement(
        model=model,
        site_id=site_id,
        node_ids=tuple(n.node_id for n in nodes),
        width=width,
        held=held,
        rack_ids=tuple(n.rack_id for n in nodes),
        racks_spanned=racks,
        domains_spanned=domains,
    )


def place_gang(  # noqa: PLR0911, PLR0917 - the rule has that many outcomes; the index signature
    index: CapacityIndex, tenant: str, model: str, site_id: str, width: int, count: int
) -> Placement | None:
    """Where ``count`` nodes with ``width`` free accelerators each fit for ``tenant``, or None."""
    groups = index.groups_for(model, site_id, tenant)
    if not groups or width > index.max_capacity:
        return None
    if count == 1:
        for group in groups:
            node = group.best_single(width, index.max_capacity)
            if node is not None:
                return _placement(model, site_id, width, [node])
        return None
    if sum(g.counts(width).total for g in groups) < count:
        return None
    keys: set[object] = {g.key for g in groups}
    domain = _best_unit(groups, width, count, racks=False)
    if domain is not None:
        nodes = _suitable(index, index.domains[domain], keys, width)
        nodes.sort(key=lambda n: (n.free, n.node_id))
        return _placement(model, site_id, width, nodes[:count])
    rack = _best_unit(groups, width, count, racks=True)
    if rack is not None:
        nodes = _pick_in_rack(_suitable(index, index.racks[rack].node_ids, keys, width), count)
        return _placement(model, site_id, width, nodes)
    per_rack: dict[str, int] = {}
    for group in groups:
        for rack_id, n in group.counts(width).rack_count.items():
            per_rack[rack_id] = per_rack.get(rack_id, 0) + n
    chosen = _choose_racks(per_rack, count)
    if not chosen:
        return None
    nodes = []
    remaining = count
    for rack_id in chosen:
        suitable = _suitable(index, index.racks[rack_id].node_ids, keys, width)
        take = _pick_in_rack(suitable, min(remaining, len(suitable)))
        nodes.extend(take)
        remaining -= len(take)
    return _placement(model, site_id, width, nodes) if remaining == 0 else None


def _choose_racks(per_rack: dict[str, int], need: int) -> list[str]:
    """Fewest racks covering ``need`` nodes: largest first, the last the smallest that fits."""
    if sum(per_rack.values()) < need:
        return []
    pool = sorted(per_rack.items(), key=lambda item: (-item[1], item[0]))
    chosen: list[str] = []
    remaining = need
    while remaining > 0:
        fitting = [(n, r) for r, n in pool if n >= remaining]
        if fitting:
            chosen.append(min(fitting)[1])
            return chosen
        rack_id, n = pool.pop(0)
        chosen.append(rack_id)
        remaining -= n
    return chosen


def place_exclusive(  # noqa: PLR0917 - same signature as place_gang (interchangeable)
    index: CapacityIndex, tenant: str, model: str, site_id: str, width: int, count: int
) -> Placement | None:
    """Whole free NVLink domains for a gang of ``count`` x ``width``, or None."""
    groups = index.groups_for(model, site_id, tenant)
    keys = {g.key for g in groups}
    candidates = sorted(
        {n.domain for g in groups for n in g.nodes.values() if not n.jobs and n.free >= width}
    )
    whole: dict[str, list[NodeSlot]] = {}
    for domain in candidates:
        members = [index.nodes[n] for n in index.domains[domain]]
        if all(m.group in keys and not m.jobs and m.free >= width for m in members):
            whole[domain] = members
    if sum(len(m) for m in whole.values()) < count:
        return None
    fitting = [(len(m), d) for d, m in whole.items() if len(m) >= count]
    if fitting:
        _, domain = min(fitting)
        members = whole[domain]
        return _placement(model, site_id, width, members[:count], tuple(m.node_id for m in members))
    per_rack: dict[str, list[str]] = {}
    for domain, members in whole.items():
        per_rack.setdefault(members[0].rack_id, []).append(domain)
    sizes = {r: sum(len(whole[d]) for d in ds) for r, ds in per_rack.items()}
    chosen_racks = _choose_racks(sizes, count)
    nodes: list[NodeSlot] = []
    held: list[str] = []
    remaining = count
    for rack_id in chosen_racks:
        domains = sorted(per_rack[rack_id], key=lambda d: (-len(whole[d]), d))
        for domain in domains:
            if remaining <= 0:
                break
            members = whole[domain]
            nodes.extend(members[:remaining])
            held.extend(m.node_id for m in members)
            remaining -= min(remaining, len(members))
    if remaining > 0:
        return None
    return _placement(model, site_id, width, nodes, tuple(held))
