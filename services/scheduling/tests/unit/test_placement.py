"""Gang placement: all or nothing, fewest domains and racks, packing, isolation, determinism."""

from __future__ import annotations

from aifactory.scheduling.engine import Placed, Queued
from aifactory.scheduling.placement import place_exclusive, place_gang

from .factory import NOW, engine_with, job


def test_gang_fits_in_one_nvlink_domain_before_spanning_racks() -> None:
    """A 4-node gang goes into one NVL72-like domain rather than across racks."""
    engine = engine_with({"r1": ("fra1", 72, 18, 4), "r2": ("fra1", 72, 18, 4)})
    placement = place_gang(engine.index, "acme", "B200", "fra1", 4, 4)
    assert placement is not None
    assert (placement.racks_spanned, placement.domains_spanned) == (1, 1)
    assert placement.node_ids == ("r1-n00", "r1-n01", "r1-n02", "r1-n03")


def test_partly_used_rack_is_packed_before_an_empty_one() -> None:
    """After a first job, a second small gang goes next to it, keeping the other rack whole."""
    engine = engine_with({"r1": ("fra1", 8, 4, 8), "r2": ("fra1", 8, 4, 8)})
    engine.submit(job("a", total=16), NOW)
    (placed,) = engine.submit(job("b", total=16), NOW)
    assert isinstance(placed, Placed)
    assert placed.job.placement is not None
    assert {n[:2] for n in placed.job.placement.node_ids} == {"r1"}


def test_gang_larger_than_a_rack_spans_fewest_racks() -> None:
    """A 6-node gang over racks of 4 uses exactly two racks."""
    engine = engine_with(
        {"r1": ("fra1", 8, 4, 8), "r2": ("fra1", 8, 4, 8), "r3": ("fra1", 8, 4, 8)}
    )
    placement = place_gang(engine.index, "acme", "B200", "fra1", 8, 6)
    assert placement is not None
    assert placement.racks_spanned == 2
    assert len(set(placement.node_ids)) == 6


def test_gang_is_all_or_nothing() -> None:
    """A gang one node larger than what is free is not partly placed."""
    engine = engine_with({"r1": ("fra1", 8, 3, 8)})
    assert place_gang(engine.index, "acme", "B200", "fra1", 8, 4) is None
    outcome = engine.submit(job("big", total=32), NOW)
    assert isinstance(outcome[0], Queued)
    assert all(n.free == 8 for n in engine.index.nodes.values())


def test_tenants_never_share_a_node() -> None:
    """A second tenant's 1-accelerator job does not go on the node holding the first tenant's."""
    engine = engine_with({"r1": ("fra1", 8, 2, 8)})
    (first,) = engine.submit(job("a", total=1, width=1), NOW)
    (second,) = engine.submit(job("b", tenant="globex", total=1, width=1), NOW)
    (third,) = engine.submit(job("c", total=1, width=1), NOW)
    nodes = [o.job.placement.node_ids for o in (first, second, third)]  # type: ignore[union-attr]
    assert nodes[0] == nodes[2] != nodes[1]


def test_dedicated_nodes_serve_only_their_tenant() -> None:
    """A node dedicated to acme takes acme's job and never globex's."""
    engine = engine_with({"r1": ("fra1", 8, 1, 8)})
    engine.set_dedication("r1-n00", "acme", NOW)
    (refused,) = engine.submit(job("g", tenant="globex"), NOW)
    assert isinstance(refused, Queued)
    (placed,) = engine.submit(job("a"), NOW)
    assert isinstance(placed, Placed)


def test_residency_restricts_sites() -> None:
    """A job allowed only in the EU is placed at the EU site even when the US one is listed first."""
    engine = engine_with({"us": ("iad1", 8, 1, 8), "eu": ("fra1", 8, 1, 8)})
    (placed,) = engine.submit(job("eu-only", jurisdictions=("EU",)), NOW)
    assert placed.job.placement is not None
    assert placed.job.placement.site_id == "fra1"
    (waits,) = engine.submit(job("eu-again", jurisdictions=("EU",)), NOW)
    assert isinstance(waits, Queued)


def test_exclusive_domain_takes_whole_domains() -> None:
    """An exclusive-domain job of 2 nodes holds its whole 4-node domain; nobody else gets those nodes."""
    engine = engine_with({"r1": ("fra1", 16, 8, 4)})
    placement = place_exclusive(engine.index, "acme", "B200", "fra1", 4, 2)
    assert placement is not None
    assert len(placement.held) == 4
    assert set(placement.node_ids) <= set(placement.held)
    engine.submit(job("x", total=8, width=4, isolation="exclusive-domain"), NOW)
    (other,) = engine.submit(job("y", tenant="globex", total=16, width=4), NOW)
    assert other.job.placement is not None
    assert not set(other.job.placement.node_ids) & set(engine.jobs["x"].placement.held)  # type: ignore[union-attr]


def test_same_state_gives_the_same_decision() -> None:
    """Two engines built in different orders place the same job on the same nodes."""
    racks = {"r1": ("fra1", 72, 9, 4), "r2": ("fra1", 72, 9, 4)}
    one = engine_with(racks)
    two = engine_with(dict(reversed(list(racks.items()))))
    a = one.submit(job("j", total=12, width=4), NOW)[0].job.placement
    b = two.submit(job("j", total=12, width=4), NOW)[0].job.placement
    assert a == b
