"""The demo's simulated factory: two sites under different jurisdictions, sized by ``--nodes``.

Nodes alternate between Frankfurt (``fra1``, EU/DE) and Ashburn (``iad1``, US/VA) and,
within a site, between H200 and B200 racks (8 accelerators per node, one HGX NVLink
domain of 8 per node). One Frankfurt H200 node is dedicated to the EU tenant (billed
per node-hour). The description is the same YAML ``aifactory inventory import``
reads; nothing here talks to NATS.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import yaml

MIN_NODES = 4
MAX_NODES = 400
ACCELERATORS_PER_NODE = 8


@dataclass(frozen=True, slots=True)
class DemoSite:
    """A site of the demo factory."""

    site_id: str
    name: str
    region: str
    jurisdiction: str


SITES = (
    DemoSite("fra1", "Frankfurt 1", "eu-central", "EU/DE"),
    DemoSite("iad1", "Ashburn 1", "us-east", "US/VA"),
)
MODELS = ("H200", "B200")
MEMORY_GIB = {"H200": 141, "B200": 180}


@dataclass(frozen=True, slots=True)
class DemoNode:
    """One simulated node."""

    node_id: str
    site_id: str
    rack_id: str
    model: str
    accelerators: int = ACCELERATORS_PER_NODE


@dataclass(frozen=True, slots=True)
class DemoFactory:
    """The generated factory: its nodes, the one dedicated node and its description."""

    nodes: tuple[DemoNode, ...]
    dedicated_node: str
    dedicated_tenant: str

    def node(self, node_id: str) -> DemoNode:
        """The node called ``node_id``."""
        return next(node for node in self.nodes if node.node_id == node_id)

    def accelerators_by_site_model(self) -> dict[tuple[str, str], int]:
        """Total accelerators per (site, model)."""
        totals: Counter[tuple[str, str]] = Counter()
        for node in self.nodes:
            totals[node.site_id, node.model] += node.accelerators
        return dict(totals)

    def shared_nodes(self) -> list[DemoNode]:
        """Nodes in the shared pool (every node but the dedicated one)."""
        return [node for node in self.nodes if node.node_id != self.dedicated_node]

    def description_yaml(self) -> str:
        """The factory description, as ``aifactory inventory import`` takes it."""
        racks = sorted({(node.rack_id, node.site_id, node.model) for node in self.nodes})
        document = {
            "version": 1,
            "sites": [
                {
                    "id": site.site_id,
                    "name": site.name,
                    "region": site.region,
                    "jurisdiction": site.jurisdiction,
                }
                for site in SITES
            ],
            "racks": [
                {"id": rack, "site": site, "kind": f"HGX-{model}", "nvlink_domain_size": 8}
                for rack, site, model in racks
            ],
            "nodes": [
                {
                    "id": node.node_id,
                    "site": node.site_id,
                    "rack": node.rack_id,
                    "model": node.model,
                    "accelerator_count": node.accelerators,
                    "accelerator_memory_gib": MEMORY_GIB[node.model],
                    "cpu_cores": 112,
                    "ram_gib": 2048,
                    "interconnect": "InfiniBand NDR 400G",
                    "labels": {"pool": "demo"},
                }
                for node in self.nodes
            ],
            "dedications": [{"node": self.dedicated_node, "tenant": self.dedicated_tenant}],
        }
        return "# aifactory demo factory (generated)\n" + yaml.safe_dump(document, sort_keys=False)


def generate_factory(node_count: int, *, dedicated_tenant: str) -> DemoFactory:
    """A factory of ``node_count`` nodes (``MIN_NODES`` to ``MAX_NODES``)."""
    if not MIN_NODES <= node_count <= MAX_NODES:
        raise ValueError(f"the demo runs {MIN_NODES} to {MAX_NODES} nodes, not {node_count}")
    nodes = []
    per_group: Counter[tuple[str, str]] = Counter()
    for index in range(node_count):
        site = SITES[index % len(SITES)]
        model = MODELS[(index // len(SITES)) % len(MODELS)]
        per_group[site.site_id, model] += 1
        rack = f"{site.site_id}-{model.lower()}-r1"
        number = per_group[site.site_id, model]
        nodes.append(
            DemoNode(f"{site.site_id}-{model.lower()}-{number:03d}", site.site_id, rack, model)
        )
    dedicated = next(n for n in nodes if n.site_id == SITES[0].site_id and n.model == MODELS[0])
    return DemoFactory(tuple(nodes), dedicated.node_id, dedicated_tenant)
