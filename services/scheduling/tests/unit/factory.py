"""Building engines and jobs for the unit tests (no I/O)."""

from __future__ import annotations

import datetime as dt

from aifactory.scheduling.domain import Job
from aifactory.scheduling.engine import Engine

NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)


def engine_with(
    racks: dict[str, tuple[str, int, int, int]],
    *,
    jurisdictions: dict[str, str] | None = None,
    model: str = "B200",
    quota: int = 10_000,
) -> Engine:
    """An engine whose racks are ``rack -> (site, domain size, nodes, accelerators per node)``."""
    engine = Engine()
    for site, jurisdiction in (jurisdictions or {"fra1": "EU/DE", "iad1": "US/VA"}).items():
        engine.index.upsert_site(site, jurisdiction)
    for rack, (site, domain, nodes, size) in racks.items():
        engine.index.upsert_rack(rack, site, domain)
        for n in range(nodes):
            engine.upsert_node(
                f"{rack}-n{n:02d}",
                site_id=site,
                rack_id=rack,
                model=model,
                capacity=size,
                state="available",
                dedicated=None,
                now=NOW,
            )
    for tenant in ("acme", "globex"):
        engine.set_quota(tenant, "*", quota)
    engine.pass_pending = False
    return engine


def job(
    job_id: str,
    *,
    tenant: str = "acme",
    total: int = 8,
    width: int = 8,
    models: tuple[str, ...] = ("B200",),
    priority: str = "standard",
    sites: tuple[str, ...] = (),
    jurisdictions: tuple[str, ...] = (),
    isolation: str = "dedicated-node",
    runtime_s: int = 3600,
    key: str | None = None,
) -> Job:
    """An admitted job."""
    return Job(
        job_id=job_id,
        tenant=tenant,
        client_job_id=job_id,
        name=job_id,
        priority=priority,
        models=models,
        total=total,
        width=width,
        runtime_s=runtime_s,
        allowed_sites=frozenset(sites),
        jurisdictions=jurisdictions,
        key_id=key,
        isolation=isolation,
        seq=0,
        submitted_at=NOW,
    )
