"""Fixtures shared by the scheduling tests: building inventory events and job specs."""

from __future__ import annotations

import datetime as dt

from aifactory.contracts.inventory.v1 import (
    Node,
    NodeRegistered,
    NodeStateChanged,
    RackRegistered,
    SiteRegistered,
)
from aifactory.contracts.jobs.v1 import JobSpec
from aifactory.store.events import NewEvent

NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)
ACTOR = "ci@test"


def site_event(site_id: str, jurisdiction: str) -> NewEvent:
    """``site_registered`` as inventory publishes it."""
    return NewEvent(
        SiteRegistered(site_id=site_id, jurisdiction=jurisdiction, actor=ACTOR), scope=site_id
    )


def rack_event(rack_id: str, site_id: str, domain_size: int) -> NewEvent:
    """``rack_registered`` as inventory publishes it."""
    return NewEvent(
        RackRegistered(
            rack_id=rack_id,
            site_id=site_id,
            kind="GB200-NVL72" if domain_size > 8 else "HGX",
            nvlink_domain_size=domain_size,
            actor=ACTOR,
        ),
        scope=site_id,
    )


def node_event(
    node_id: str,
    site_id: str,
    rack_id: str,
    *,
    model: str = "B200",
    accelerators: int = 8,
    tenant: str | None = None,
    state: str = "available",
) -> NewEvent:
    """``node_registered`` as inventory publishes it."""
    node = Node(
        node_id=node_id,
        site_id=site_id,
        rack_id=rack_id,
        model=model,  # type: ignore[arg-type]
        accelerator_count=accelerators,
        accelerator_memory_gib=180,
        cpu_cores=112,
        ram_gib=2048,
        state=state,  # type: ignore[arg-type]
        state_changed_at=NOW,
        tenant=tenant,
        registered_at=NOW,
        updated_at=NOW,
    )
    return NewEvent(NodeRegistered(node=node, actor=ACTOR), scope=site_id, tenant=tenant)


def state_event(
    node_id: str,
    site_id: str,
    rack_id: str,
    from_state: str,
    to_state: str,
    *,
    model: str = "B200",
    accelerators: int = 8,
    reason: str = "",
) -> NewEvent:
    """``node_state_changed`` as inventory publishes it."""
    return NewEvent(
        NodeStateChanged(
            node_id=node_id,
            site_id=site_id,
            rack_id=rack_id,
            model=model,  # type: ignore[arg-type]
            accelerator_count=accelerators,
            from_state=from_state,  # type: ignore[arg-type]
            to_state=to_state,  # type: ignore[arg-type]
            reason=reason,
            actor=ACTOR,
            changed_at=NOW,
        ),
        scope=site_id,
    )


def small_factory() -> list[NewEvent]:
    """Two sites: fra1 (EU/DE) with 2 HGX racks of 2 B200 nodes x 8, iad1 (US/VA) with 1 node."""
    events = [site_event("fra1", "EU/DE"), site_event("iad1", "US/VA")]
    events += [rack_event("fra1-r1", "fra1", 8), rack_event("fra1-r2", "fra1", 8)]
    events += [rack_event("iad1-r1", "iad1", 8)]
    events += [node_event(f"b{r}{n}", "fra1", f"fra1-r{r}") for r in (1, 2) for n in (1, 2)]
    events += [node_event("h1", "iad1", "iad1-r1")]
    return events


def spec(
    client_job_id: str,
    *,
    tenant: str = "acme",
    accelerators: int = 8,
    per_node: int = 8,
    models: tuple[str, ...] = ("B200",),
    priority: str = "standard",
    sites: tuple[str, ...] = (),
    jurisdictions: tuple[str, ...] = (),
    key: str | None = None,
    isolation: str = "dedicated-node",
    runtime_s: int = 3600,
) -> JobSpec:
    """A job spec with sensible defaults."""
    return JobSpec(
        tenant=tenant,
        client_job_id=client_job_id,
        name=f"job {client_job_id}",
        models=list(models),
        accelerators=accelerators,
        accelerators_per_node=per_node,
        priority=priority,  # type: ignore[arg-type]
        expected_runtime_s=runtime_s,
        allowed_sites=list(sites),
        allowed_jurisdictions=list(jurisdictions),
        dataset_key_id=key,
        isolation=isolation,  # type: ignore[arg-type]
    )
