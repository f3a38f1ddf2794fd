"""Pieces of ``aifactory demo``: the generated factory, the fault plan, the workload mix, figures."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from nats.aio.client import Client

from aifactory.bus.settings import ROOT_NAMESPACE
from aifactory.cli.console import CliError
from aifactory.cli.demo.factory import generate_factory
from aifactory.cli.demo.faults import plan_faults
from aifactory.cli.demo.orchestrator import MARKER, fresh_state_dir
from aifactory.cli.demo.tenants import TENANTS
from aifactory.cli.demo.workload import Workload, WorkloadStats, percentile


def test_the_factory_alternates_sites_and_models_and_dedicates_one_eu_node() -> None:
    """8 nodes: 2 per site and model, 8 accelerators each, one fra1 H200 node dedicated to eu-bank."""
    factory = generate_factory(8, dedicated_tenant="eu-bank")
    assert len(factory.nodes) == 8
    assert factory.accelerators_by_site_model() == {
        ("fra1", "H200"): 16,
        ("fra1", "B200"): 16,
        ("iad1", "H200"): 16,
        ("iad1", "B200"): 16,
    }
    dedicated = factory.node(factory.dedicated_node)
    assert (dedicated.site_id, dedicated.model) == ("fra1", "H200")
    assert len(factory.shared_nodes()) == 7


def test_the_description_is_an_importable_yaml_document() -> None:
    """The YAML names both jurisdictions, every node with its hardware, and the dedication."""
    factory = generate_factory(6, dedicated_tenant="eu-bank")
    document = yaml.safe_load(factory.description_yaml())
    assert {site["jurisdiction"] for site in document["sites"]} == {"EU/DE", "US/VA"}
    assert [node["id"] for node in document["nodes"]] == [n.node_id for n in factory.nodes]
    assert all(node["accelerator_memory_gib"] > 0 for node in document["nodes"])
    assert document["dedications"] == [{"node": factory.dedicated_node, "tenant": "eu-bank"}]


@pytest.mark.parametrize("count", [3, 401])
def test_node_counts_outside_the_range_are_refused(count: int) -> None:
    """Fewer than 4 nodes (one per site and model) or more than 400 is an error."""
    with pytest.raises(ValueError, match="4 to 400"):
        generate_factory(count, dedicated_tenant="eu-bank")


@pytest.mark.parametrize("count", [4, 8, 24])
def test_faults_hit_two_different_shared_nodes_in_order(count: int) -> None:
    """The Xid hits a shared B200 node, the silence a shared H200 node, then the key is revoked."""
    factory = generate_factory(count, dedicated_tenant="eu-bank")
    plan = plan_faults(factory, 100.0)
    assert factory.node(plan.xid_node).model == "B200"
    assert factory.node(plan.silent_node).model == "H200"
    assert factory.dedicated_node not in (plan.xid_node, plan.silent_node)
    assert plan.xid_at_s < plan.silent_at_s < plan.revoke_at_s < 100.0
    assert plan.revoke_tenant == "us-health"


def test_the_workload_mix_respects_each_tenants_residency_and_key() -> None:
    """Jobs carry the tenant's jurisdictions and dataset key, one-node gangs, unique client ids."""
    workload = Workload(cast(Client, _NoNats()), ROOT_NAMESPACE, rate_per_s=10, seed=7)
    jobs = [workload.next_job() for _ in range(300)]
    residency = {tenant.tenant: tenant.residency for tenant in TENANTS}
    assert all(tuple(job.allowed_jurisdictions) == residency[job.tenant] for job in jobs)
    assert all(job.dataset_key_id == "datasets" for job in jobs)
    assert all(job.accelerators == job.accelerators_per_node <= 8 for job in jobs)
    assert len({job.client_job_id for job in jobs}) == 300
    assert set(Counter(job.tenant for job in jobs)) == set(residency)
    assert {job.priority for job in jobs if job.tenant == "eu-bank"} <= {"critical", "standard"}


def test_latency_quantiles_use_the_nearest_rank() -> None:
    """p50 / p99 of 1..100 ms are 50 and 99 ms; no samples give 0."""
    stats = WorkloadStats(latencies_ms=[float(n) for n in range(100, 0, -1)])
    assert stats.latency_ms(0.5) == 50.0
    assert stats.latency_ms(0.99) == 99.0
    assert percentile([], 0.99) == 0.0


def test_a_demo_state_directory_is_wiped_but_a_foreign_one_is_refused(tmp_path: Path) -> None:
    """fresh_state_dir empties a directory it marked before and refuses one with other content."""
    demo = tmp_path / "demo"
    fresh_state_dir(demo)
    (demo / "old.db").write_text("state of the last run")
    fresh_state_dir(demo)
    assert sorted(p.name for p in demo.iterdir()) == [MARKER]
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("do not delete")
    with pytest.raises(CliError, match="other than a demo"):
        fresh_state_dir(foreign)
    assert (foreign / "thesis.tex").exists()


class _NoNats:
    """Stands in for a NATS client where nothing is sent (the mix is pure)."""

    def jetstream(self) -> Any:
        return None
