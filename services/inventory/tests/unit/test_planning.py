"""Planning an import against what inventory holds (pure)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aifactory.inventory.description import parse_description
from aifactory.inventory.domain import (
    ImportPlan,
    NodeRecord,
    RackRecord,
    SiteRecord,
    Snapshot,
    plan_import,
)
from aifactory.inventory.errors import DescriptionError

EMPTY = Snapshot({}, {}, {})


def _applied(plan: ImportPlan) -> Snapshot:
    """The snapshot after applying a plan to an empty inventory (enough for these tests)."""
    sites = {
        s.site_id: SiteRecord(s.site_id, s.name, s.region, s.jurisdiction) for s in plan.new_sites
    }
    racks = {
        r.rack_id: RackRecord(r.rack_id, r.site_id, r.kind, r.nvlink_domain_size, t)
        for r, t in plan.new_racks
    }
    nodes = {
        n.decl.spec.node_id: NodeRecord(n.decl.spec, n.decl.initial_state, n.node_tenant, n.tenant)
        for n in plan.new_nodes
    }
    return Snapshot(sites, racks, nodes)


def test_first_import_creates_everything(small_factory: str) -> None:
    """Against an empty inventory every site, rack and node is new; new racks carry their tenant."""
    plan = plan_import(parse_description(small_factory), EMPTY)
    assert (len(plan.new_sites), len(plan.new_racks), len(plan.new_nodes)) == (2, 3, 7)
    assert plan.event_count == 12
    assert {r.rack_id: t for r, t in plan.new_racks}["fra1-r02"] == "acme"
    tenants = {n.decl.spec.node_id: n.tenant for n in plan.new_nodes}
    assert tenants["gpu-b01"] == "acme"
    assert tenants["gpu-a001"] is None
    assert plan.dedications == []


def test_second_import_changes_nothing(small_factory: str) -> None:
    """Planning the same description against its own result yields no change at all."""
    description = parse_description(small_factory)
    plan = plan_import(description, _applied(plan_import(description, EMPTY)))
    assert plan.event_count == 0
    assert (plan.unchanged_sites, plan.unchanged_racks, plan.unchanged_nodes) == (2, 3, 7)


def test_editing_one_node_plans_one_update(
    small_factory: str, edit: Callable[[str, str, str], str]
) -> None:
    """Changing the RAM of the B200 range's entry updates exactly those nodes, with the field's before/after."""
    snapshot = _applied(plan_import(parse_description(small_factory), EMPTY))
    text = edit(small_factory, "id: trn-c001", "id: trn-c001\n    interconnect: EFAv3")
    plan = plan_import(parse_description(text), snapshot)
    assert plan.event_count == 1
    (change,) = plan.changed_nodes
    assert change.spec.node_id == "trn-c001"
    assert [(c.field, c.before, c.after) for c in change.changes] == [("interconnect", "", "EFAv3")]


def test_rack_dedication_of_existing_rack_lists_the_affected_nodes(small_factory: str) -> None:
    """Dedicating an existing rack emits one dedication change naming its nodes whose tenant changes."""
    snapshot = _applied(plan_import(parse_description(small_factory), EMPTY))
    text = small_factory + "  - rack: fra1-r01\n    tenant: globex\n"
    plan = plan_import(parse_description(text), snapshot)
    (change,) = plan.dedications
    assert (change.target, change.target_id, change.previous_tenant, change.tenant) == (
        "rack",
        "fra1-r01",
        None,
        "globex",
    )
    assert change.node_ids == ("gpu-a001", "gpu-a002", "gpu-a003", "gpu-a004")


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("site: fra1\n    kind: HGX-B200", "site: ams1\n    kind: HGX-B200", "unknown site 'ams1'"),
        (
            "    rack: fra1-r02\n    model: B200",
            "    rack: fra1-r09\n    model: B200",
            "unknown rack 'fra1-r09'",
        ),
        (
            "    site: iad1\n    rack: iad1-r01",
            "    site: fra1\n    rack: iad1-r01",
            "is at site iad1",
        ),
        (
            "  - rack: fra1-r02\n    tenant: acme",
            "  - rack: fra1-r77\n    tenant: acme",
            "unknown rack",
        ),
    ],
)
def test_unknown_or_inconsistent_reference_names_the_line(
    small_factory: str, edit: Callable[[str, str, str], str], old: str, new: str, fragment: str
) -> None:
    """An unknown site or rack, or a node at another site than its rack, is a DescriptionError with a line."""
    text = edit(small_factory, old, new)
    with pytest.raises(DescriptionError, match=fragment) as caught:
        plan_import(parse_description(text), EMPTY)
    assert caught.value.line > 0


def test_node_dedication_against_its_racks_tenant_is_refused(small_factory: str) -> None:
    """Dedicating a node to globex inside a rack dedicated to acme is refused, naming a dedication's line."""
    text = small_factory + "  - node: gpu-b01\n    tenant: globex\n"
    with pytest.raises(DescriptionError, match=r"gpu-b01.*globex|globex.*gpu-b01") as caught:
        plan_import(parse_description(text), EMPTY)
    assert "acme" in caught.value.message
    assert caught.value.line in (text.count("\n") - 1, text.count("\n") - 3)


def test_node_never_moves_between_sites(
    small_factory: str, edit: Callable[[str, str, str], str]
) -> None:
    """A node already registered at one site cannot be re-declared at another (retire and register anew)."""
    snapshot = _applied(plan_import(parse_description(small_factory), EMPTY))
    moved = edit(
        small_factory,
        "  - id: gpu-a[001-004]\n    site: fra1\n    rack: fra1-r01",
        "  - id: gpu-a[001-004]\n    site: iad1\n    rack: iad1-r01",
    )
    with pytest.raises(DescriptionError, match="does not move between sites") as caught:
        plan_import(parse_description(moved), snapshot)
    assert caught.value.line == moved[: moved.index("  - id: gpu-a")].count("\n") + 1
