"""Key revocation end to end: keys, inventory, scheduling and health, each its own process.

DESIGN.md flow 6: a tenant's dataset key is created in the keys service (allowed at
fra1, usable by the scheduler); the tenant's jobs naming it are placed; an operator
revokes the key; the keys service publishes ``key_revoked``; the scheduler preempts
and requeues every running job of the tenant that uses the key within 5 s of the
revocation (measured on the events' own timestamps) and places none of them again.
The preempted jobs wait with ``key_unusable``; a new submission naming the revoked key
is rejected (``key_not_allowed``: a revoked key never becomes usable again), while
another tenant's job still places on the freed capacity.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed
from aifactory.bus.settings import Namespace
from aifactory.contracts.jobs.v1 import (
    GetJob,
    JobAcceptance,
    JobPlaced,
    JobPreempted,
    JobRequeued,
    JobView,
    SubmitJob,
)
from aifactory.contracts.keys.v1 import (
    CreateKey,
    KeyDescription,
    KeyPolicy,
    KeyRevoked,
    RevokeKey,
)

from ._factory import OPERATOR, SITE, Factory, job_events, job_spec

pytestmark = pytest.mark.integration

KEY = "acme-datasets"
PREEMPTION_DEADLINE = dt.timedelta(seconds=5)


async def test_revoking_a_key_preempts_its_jobs_within_5s_and_places_none_after(
    nats_url: str, namespace: Namespace, nats_client: Client, tmp_path: Path
) -> None:
    """Revoking acme's dataset key preempts acme's running jobs that use it within 5 s of key_revoked, and none of them is placed again."""
    factory = Factory(nats_client, nats_url=nats_url, namespace=namespace, workdir=tmp_path)
    try:
        await factory.start()
        await factory.onboard()
        created = await factory.request(
            CreateKey(
                tenant="acme",
                key_id=KEY,
                policy=KeyPolicy(
                    allowed_sites=[SITE], allowed_callers=["tenant:acme", "service:scheduling"]
                ),
                caller=OPERATOR,
            ),
            KeyDescription,
        )
        assert created.state == "enabled"
        async with job_events(nats_client, namespace) as events:
            acme_jobs = []
            for name in ("train", "eval"):
                accepted = await factory.request(
                    SubmitJob(job=job_spec(name, dataset_key_id=KEY)), JobAcceptance
                )
                assert accepted.state == "placed", accepted
                acme_jobs.append(accepted.job_id)
            other = await factory.request(
                SubmitJob(job=job_spec("other", tenant="globex")), JobAcceptance
            )
            assert other.state == "placed", other

            revoked = await factory.request(
                RevokeKey(tenant="acme", key_id=KEY, caller=OPERATOR, reason="offboarding"),
                KeyDescription,
            )
            assert revoked.state == "revoked"
            for job_id in acme_jobs:
                await events.wait(JobPreempted, job_id)
                await events.wait(JobRequeued, job_id)

            # after the revocation: a new job naming the key is refused for good (a revoked
            # key never comes back); another tenant's job places on the freed capacity
            with pytest.raises(CommandFailed) as refused:
                await factory.request(
                    SubmitJob(job=job_spec("late", dataset_key_id=KEY)), JobAcceptance
                )
            assert refused.value.error.code == "invalid_request"
            assert refused.value.error.details["reason"] == "key_not_allowed"
            late_id = refused.value.error.details["job_id"]
            after = await factory.request(
                SubmitJob(job=job_spec("after", tenant="globex")), JobAcceptance
            )
            assert after.state == "placed", after
            await events.wait(JobPlaced, after.job_id)
            for job_id in acme_jobs:
                view = await factory.request(GetJob(job_id=job_id), JobView)
                assert (view.state, view.reason) == ("queued", "key_unusable"), view

        (revocation,) = [
            e.data for e in await factory.replay("FACTORY_KEYS") if isinstance(e.data, KeyRevoked)
        ]
        jobs_log = [e.data for e in await factory.replay("FACTORY_JOBS")]
        preempted = {e.job_id: e for e in jobs_log if isinstance(e, JobPreempted)}
        assert set(preempted) == set(acme_jobs), "exactly acme's jobs using the key are preempted"
        for job_id in acme_jobs:
            event = preempted[job_id]
            assert event.by_job_id is None
            delay = event.preempted_at - revocation.at
            assert dt.timedelta(0) <= delay <= PREEMPTION_DEADLINE, (
                f"{job_id} preempted {delay.total_seconds():.3f} s after key_revoked "
                f"(revoked at {revocation.at.isoformat()}, preempted at "
                f"{event.preempted_at.isoformat()}); the promise is within 5 s"
            )
        requeued = [e for e in jobs_log if isinstance(e, JobRequeued)]
        assert {(e.job_id, e.reason) for e in requeued} == {(j, "key_revoked") for j in acme_jobs}
        placed_after = [
            e
            for e in jobs_log
            if isinstance(e, JobPlaced) and e.tenant == "acme" and e.placed_at >= revocation.at
        ]
        assert placed_after == [], "acme jobs were placed after the key was revoked"
        assert late_id not in {getattr(e, "job_id", None) for e in jobs_log}
        assert {e.job_id for e in jobs_log if isinstance(e, JobPlaced)} == {
            *acme_jobs,
            other.job_id,
            after.job_id,
        }
    except BaseException:
        print(factory.logs())
        raise
    finally:
        codes = factory.stop()
    assert codes == dict.fromkeys(factory.processes, 0), factory.logs()
