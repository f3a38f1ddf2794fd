"""Parsing factory descriptions: validation with the YAML line of every problem."""

from __future__ import annotations

import pytest

from aifactory.inventory.description import parse_description
from aifactory.inventory.errors import DescriptionError

NODE = """\
nodes:
  - id: n1
    site: s1
    rack: r1
    model: H100
    accelerator_count: 8
    accelerator_memory_gib: 80
    cpu_cores: 96
    ram_gib: 1024
"""


def test_small_factory_parses_with_ranges_expanded(small_factory: str) -> None:
    """The sample declares 2 sites, 3 racks, 7 nodes (ranges expanded) and one rack dedication."""
    description = parse_description(small_factory)
    assert [s.site_id for s in description.sites] == ["fra1", "iad1"]
    assert len(description.racks) == 3
    assert [n.spec.node_id for n in description.nodes][:5] == [
        "gpu-a001",
        "gpu-a002",
        "gpu-a003",
        "gpu-a004",
        "gpu-b01",
    ]
    assert len(description.nodes[-1].spec.accelerators) == 16
    assert [(d.target, d.target_id, d.tenant) for d in description.dedications] == [
        ("rack", "fra1-r02", "acme")
    ]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("sites:\n  - id: s1\n    jurisdiction: [EU\n", 3, "malformed YAML"),
        (NODE.replace("model: H100", "model: A100"), 5, "known models"),
        (NODE.replace("accelerator_count: 8", "accelerator_count: -8"), 6, "between 1 and 64"),
        (NODE.replace("ram_gib: 1024", "ram_gib: 99999999"), 9, "ram_gib must be between"),
        (NODE.replace("cpu_cores: 96", "cpu_cores: many"), 8, "Expected `int`"),
        (NODE + "    colour: red\n", 10, "unknown field `colour`"),
        (NODE + "    ram_gib: 12\n", 10, "duplicate key"),
        (NODE.replace("id: n1", "id: n[3-1]"), 2, "backwards"),
        (NODE.replace("id: n1", "id: N_1"), 2, "must be 1-63 characters"),
        ("sites:\n  - id: s1\n    jurisdiction: Germany\n", 3, "jurisdiction"),
        ("racks: {}\n", 1, "must be a list"),
        ("hosts: []\n", 1, "unknown section"),
        ("version: 2\n", 1, "version 1"),
        ("dedications:\n  - tenant: acme\n", 2, "exactly one of"),
    ],
)
def test_bad_description_names_the_line(text: str, line: int, fragment: str) -> None:
    """Every kind of bad input raises DescriptionError whose line points at the problem."""
    with pytest.raises(DescriptionError) as caught:
        parse_description(text)
    assert fragment in caught.value.message
    assert caught.value.line == line
    assert caught.value.details["line"] == str(line)


def test_same_node_twice_with_different_hardware_is_an_error() -> None:
    """A node id declared twice with conflicting hardware is refused, naming both lines."""
    text = NODE + NODE.removeprefix("nodes:\n").replace("ram_gib: 1024", "ram_gib: 512")
    with pytest.raises(DescriptionError, match=r"declared again.*first on line 2") as caught:
        parse_description(text)
    assert caught.value.line == 10


def test_same_node_twice_identically_is_one_node() -> None:
    """An identical repeat of a node is harmless and yields one declaration."""
    text = NODE + NODE.removeprefix("nodes:\n")
    assert len(parse_description(text).nodes) == 1


def test_devices_cannot_be_listed_for_a_range() -> None:
    """Accelerator devices belong to one node, so listing them on a range is refused."""
    text = NODE.replace("id: n1", "id: n[1-2]").replace(
        "accelerator_count: 8", "accelerator_count: 1"
    )
    text += "    accelerators:\n      - {index: 0, uuid: g0}\n"
    with pytest.raises(DescriptionError, match="single node"):
        parse_description(text)


def test_empty_description_is_refused() -> None:
    """An empty file is an error, not a silent no-op."""
    with pytest.raises(DescriptionError, match="empty"):
        parse_description("   \n")
