"""Rendering the inventory as a factory description (the inverse of ``description``).

Nodes that differ only by their number are folded back into host ranges
(``gpu-a[001-128]``), so the export of a 10,000-node factory stays a small file;
nodes with individually listed accelerator devices are written one by one.
Importing an export into the same inventory changes nothing. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from aifactory.contracts.inventory.v1 import NodeSpec
from aifactory.inventory.domain import RackRecord, SiteRecord
from aifactory.inventory.ranges import compress_ids


def _node_entry(spec: NodeSpec, node_id: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": node_id,
        "site": spec.site_id,
        "rack": spec.rack_id,
        "model": spec.model,
        "accelerator_count": spec.accelerator_count,
        "accelerator_memory_gib": spec.accelerator_memory_gib,
        "cpu_cores": spec.cpu_cores,
        "ram_gib": spec.ram_gib,
    }
    if spec.interconnect:
        entry["interconnect"] = spec.interconnect
    if spec.labels:
        entry["labels"] = dict(spec.labels)
    if spec.accelerators:
        entry["accelerators"] = [
            {"index": a.index, "uuid": a.uuid, **({"serial": a.serial} if a.serial else {})}
            for a in spec.accelerators
        ]
    return entry


def render_description(
    sites: Sequence[SiteRecord],
    racks: Sequence[RackRecord],
    nodes: Sequence[tuple[NodeSpec, str | None]],
) -> str:
    """The YAML description of these sites, racks and (node, own dedication) pairs."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    singles: list[dict[str, Any]] = []
    shape_of: dict[tuple[Any, ...], NodeSpec] = {}
    for spec, _ in nodes:
        if spec.accelerators:
            singles.append(_node_entry(spec, spec.node_id))
            continue
        key = (
            spec.site_id,
            spec.rack_id,
            spec.model,
            spec.accelerator_count,
            spec.accelerator_memory_gib,
            spec.cpu_cores,
            spec.ram_gib,
            spec.interconnect,
            tuple(sorted(spec.labels.items())),
        )
        groups.setdefault(key, []).append(spec.node_id)
        shape_of.setdefault(key, spec)
    node_entries = [
        _node_entry(shape_of[key], pattern)
        for key, ids in groups.items()
        for pattern in compress_ids(ids)
    ]
    node_entries.extend(singles)
    node_entries.sort(key=lambda e: (e["site"], e["rack"], e["id"]))
    dedications: list[dict[str, Any]] = [
        {"rack": r.rack_id, "tenant": r.tenant} for r in racks if r.tenant is not None
    ]
    by_tenant: dict[str, list[str]] = {}
    for spec, node_tenant in nodes:
        if node_tenant is not None:
            by_tenant.setdefault(node_tenant, []).append(spec.node_id)
    for tenant, ids in sorted(by_tenant.items()):
        dedications.extend({"node": pattern, "tenant": tenant} for pattern in compress_ids(ids))
    document: dict[str, Any] = {
        "version": 1,
        "sites": [
            {
                "id": s.site_id,
                **({"name": s.name} if s.name else {}),
                **({"region": s.region} if s.region else {}),
                "jurisdiction": s.jurisdiction,
            }
            for s in sites
        ],
        "racks": [
            {
                "id": r.rack_id,
                "site": r.site_id,
                "kind": r.kind,
                "nvlink_domain_size": r.nvlink_domain_size,
            }
            for r in racks
        ],
        "nodes": node_entries,
        "dedications": dedications,
    }
    dumper = yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper
    return yaml.dump(document, Dumper=dumper, sort_keys=False, default_flow_style=False, width=100)
