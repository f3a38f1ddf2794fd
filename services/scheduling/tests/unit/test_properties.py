"""Property tests of the placement domain over random factories and job streams.

Hypothesis builds a factory (sites under jurisdictions, racks with NVLink domain
sizes, nodes of two models and two sizes, some dedicated to a tenant) and drives the
engine with a random stream of submissions (admitted or rejected by the admission
rules), finishes, cancellations, node failures and returns, and scheduling passes.
After every step the invariants hold: no accelerator is given twice or beyond a
node's size, no node holds two tenants' jobs (nor a job of a tenant it is not
dedicated to), no job runs outside its allowed sites or on a lost node, every gang
is whole, and every job is placed, queued with a reason, or ended with a reason.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aifactory.contracts.jobs.v1 import JobSpec
from aifactory.scheduling.domain import check_admission, job_from_spec
from aifactory.scheduling.engine import LOSING_STATES, Engine

from .factory import NOW

SITES = {"fra1": "EU/DE", "par1": "EU/FR", "iad1": "US/VA"}
MODELS = ("B200", "GB200")
TENANTS = ("acme", "globex", "initech")


@st.composite
def factories(draw: st.DrawFn) -> Engine:
    """A random factory (1-6 racks of 1-6 nodes) with quotas for two of three tenants."""
    engine = Engine(max_requeues=draw(st.integers(0, 2)))
    for site, jurisdiction in SITES.items():
        engine.index.upsert_site(site, jurisdiction)
    for r in range(draw(st.integers(1, 6))):
        site = draw(st.sampled_from(sorted(SITES)))
        model = draw(st.sampled_from(MODELS))
        size = draw(st.sampled_from((4, 8)))
        engine.index.upsert_rack(f"r{r}", site, draw(st.sampled_from((0, 8, 16, 32))))
        for n in range(draw(st.integers(1, 6))):
            dedicated = draw(st.sampled_from((None, None, None, "acme", "globex")))
            engine.upsert_node(
                f"r{r}-n{n}",
                site_id=site,
                rack_id=f"r{r}",
                model=model,
                capacity=size,
                state="available",
                dedicated=dedicated,
                now=NOW,
            )
    engine.set_quota("acme", "*", draw(st.sampled_from((16, 64, 1000))))
    engine.set_quota("globex", "B200", draw(st.sampled_from((8, 1000))))
    engine.pass_pending = False
    return engine


specs = st.builds(
    JobSpec,
    tenant=st.sampled_from(TENANTS),
    client_job_id=st.uuids().map(str),
    name=st.just("job"),
    models=st.lists(st.sampled_from((*MODELS, "H100")), min_size=1, max_size=2, unique=True),
    accelerators=st.sampled_from((1, 2, 4, 8, 12, 16, 24, 32, 64)),
    accelerators_per_node=st.sampled_from((1, 2, 4, 8, 16)),
    priority=st.sampled_from(("critical", "standard", "preemptible")),
    expected_runtime_s=st.sampled_from((60, 3600, 86400)),
    allowed_sites=st.lists(st.sampled_from(sorted(SITES)), max_size=2, unique=True),
    allowed_jurisdictions=st.lists(st.sampled_from(("EU", "US", "EU/DE")), max_size=1),
    isolation=st.sampled_from(("dedicated-node", "dedicated-node", "exclusive-domain")),
)


def check_invariants(engine: Engine, fates: dict[str, str]) -> None:
    """The properties the module docstring lists."""
    index = engine.index
    for node in index.nodes.values():
        full = (1 << node.capacity) - 1
        used = 0
        tenants = set()
        for job_id, mask in node.jobs.items():
            assert mask, f"{node.node_id}: empty allocation"
            assert not used & mask, f"{node.node_id}: accelerator given twice"
            used |= mask
            tenants.add(engine.jobs[job_id].tenant)
        assert used & ~full == 0, f"{node.node_id}: beyond its size"
        assert node.free_mask == full & ~used
        assert len(tenants) <= 1, f"{node.node_id} holds tenants {tenants}"
        if node.dedicated is not None:
            assert tenants <= {node.dedicated}
        if node.held_by is not None:
            assert set(node.jobs) <= {node.held_by}
    for job in engine.jobs.values():
        if job.state in ("placed", "running"):
            placement = job.placement
            assert placement is not None
            assert len(job.masks) == job.count, "gang not whole"
            assert all(m.bit_count() == job.width for m in job.masks.values())
            assert placement.model in job.models
            for node_id in job.masks:
                node = index.nodes[node_id]
                assert node.model == placement.model
                assert node.site_id == placement.site_id
                assert node.state not in LOSING_STATES
                assert job.may_run_at(node.site_id, index.sites[node.site_id].jurisdiction)
        else:
            assert job.state == "queued", f"{job.job_id} is {job.state}"
            assert job.reason, f"{job.job_id} waits without a reason"
    for job_id, fate in fates.items():
        if job_id not in engine.jobs:
            assert fate, f"{job_id} vanished without a reason"


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(engine=factories(), data=st.data())
def test_random_job_streams_keep_every_invariant(engine: Engine, data: st.DataObject) -> None:
    """Over random factories and streams of submissions, reports, node failures and passes, every invariant holds after every step."""
    fates: dict[str, str] = {}
    now = NOW
    for step in range(data.draw(st.integers(5, 40), label="steps")):
        now += dt.timedelta(seconds=30)
        action = data.draw(
            st.sampled_from(
                ("submit", "submit", "submit", "end", "cancel", "fail", "return", "pass")
            )
        )
        active = sorted(engine.jobs)
        nodes = sorted(engine.index.nodes)
        if action == "submit":
            spec = data.draw(specs)
            rejection = check_admission(spec, engine.index, engine.quotas.get(spec.tenant), None)
            job = job_from_spec(spec, f"j{step}", now)
            if rejection is not None:
                assert rejection.message
                fates[job.job_id] = f"rejected: {rejection.reason}"
                continue
            fates[job.job_id] = ""
            engine.submit(job, now)
        elif action == "end" and active:
            job = engine.jobs[data.draw(st.sampled_from(active))]
            if engine.report_ended(job, None, "finished"):
                fates[job.job_id] = "finished"
        elif action == "cancel" and active:
            job = engine.jobs[data.draw(st.sampled_from(active))]
            engine.cancel(job)
            fates[job.job_id] = "cancelled"
        elif action == "fail" and nodes:
            node_id = data.draw(st.sampled_from(nodes))
            state = data.draw(st.sampled_from(("failed", "draining", "cordoned")))
            for outcome in engine.set_node_state(node_id, state, "", now):
                if outcome.job.state == "abandoned":
                    fates[outcome.job.job_id] = "abandoned"
        elif action == "return" and nodes:
            engine.set_node_state(data.draw(st.sampled_from(nodes)), "available", "", now)
        elif action == "pass":
            engine.schedule_pass(now)
        check_invariants(engine, fates)
    engine.schedule_pass(now)
    check_invariants(engine, fates)
