"""Rendering the inventory as a description: ranges folded, and a lossless round trip."""

from __future__ import annotations

from aifactory.inventory.description import parse_description
from aifactory.inventory.domain import NodeRecord, RackRecord, SiteRecord, Snapshot, plan_import
from aifactory.inventory.export import render_description


def _held(small_factory: str) -> Snapshot:
    plan = plan_import(parse_description(small_factory), Snapshot({}, {}, {}))
    return Snapshot(
        {
            s.site_id: SiteRecord(s.site_id, s.name, s.region, s.jurisdiction)
            for s in plan.new_sites
        },
        {
            r.rack_id: RackRecord(r.rack_id, r.site_id, r.kind, r.nvlink_domain_size, t)
            for r, t in plan.new_racks
        },
        {
            n.decl.spec.node_id: NodeRecord(n.decl.spec, "available", n.node_tenant, n.tenant)
            for n in plan.new_nodes
        },
    )


def _render(snapshot: Snapshot) -> str:
    return render_description(
        list(snapshot.sites.values()),
        list(snapshot.racks.values()),
        [(n.spec, n.node_tenant) for n in snapshot.nodes.values()],
    )


def test_export_folds_alike_nodes_into_ranges(small_factory: str) -> None:
    """Four alike GB200 nodes are exported as one gpu-a[001-004] entry."""
    text = _render(_held(small_factory))
    assert "id: gpu-a[001-004]" in text
    assert "id: gpu-b[01-02]" in text
    assert "tenant: acme" in text


def test_importing_an_export_changes_nothing(small_factory: str) -> None:
    """The export of an inventory, planned against that inventory, is all unchanged."""
    held = _held(small_factory)
    plan = plan_import(parse_description(_render(held)), held)
    assert plan.event_count == 0
    assert plan.unchanged_nodes == 7


def test_node_dedications_are_exported_as_ranges() -> None:
    """Nodes dedicated one by one to a tenant come back as one range dedication."""
    small = (
        "sites: [{id: s1, jurisdiction: EU/DE}]\n"
        "racks: [{id: r1, site: s1, kind: HGX-H200}]\n"
        "nodes:\n  - {id: 'h[1-3]', site: s1, rack: r1, model: H200, accelerator_count: 8,"
        " accelerator_memory_gib: 141, cpu_cores: 96, ram_gib: 2048}\n"
        "dedications:\n  - {node: 'h[1-2]', tenant: globex}\n"
    )
    rendered = _render(_held(small))
    assert "node: h[1-2]" in rendered
