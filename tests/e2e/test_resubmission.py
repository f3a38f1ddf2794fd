"""Idempotent resubmission end to end: the same tenant and client job id is one job.

A submitting system may send a job again: because it timed out, crashed, or runs
twice. Every way in reaches the scheduler (a process) here: the ``submit_job``
command again, several concurrent commands, ``job_submitted`` through JetStream
with a new event id, and the very same event published again (its ``ce-id``, which
JetStream's duplicate window drops). Whatever the mix, the event log shows one
``job_accepted`` and one ``job_placed``, and the scheduler holds one job. The
scheduler runs on SQLite and, where one is available, PostgreSQL.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client

from aifactory.bus.publisher import EventPublisher
from aifactory.bus.settings import Namespace
from aifactory.contracts.jobs.v1 import (
    JobAcceptance,
    JobAccepted,
    JobPage,
    JobPlaced,
    JobSubmitted,
    ListJobs,
    SubmitJob,
)
from aifactory.scheduling.domain import job_id_for
from aifactory.store.events import NewEvent

from ._factory import Factory, job_spec

pytestmark = pytest.mark.integration


async def test_resubmitting_a_job_any_way_gives_one_job(
    nats_url: str, namespace: Namespace, nats_client: Client, tmp_path: Path, database_url: str
) -> None:
    """Commands (sequential and concurrent), re-published events and a re-sent event for the same client job id give one accepted job, placed once."""
    factory = Factory(
        nats_client,
        nats_url=nats_url,
        namespace=namespace,
        workdir=tmp_path,
        services=("inventory", "scheduling"),
        databases={"scheduling": database_url},
    )
    spec = job_spec("nightly-finetune/2026-11-26", tenant="globex", accelerators=16)
    job_id = job_id_for("globex", spec.client_job_id)
    try:
        await factory.start()
        await factory.onboard()
        first = await factory.request(SubmitJob(job=spec), JobAcceptance)
        assert (first.job_id, first.created, first.state) == (job_id, True, "placed")
        again = await factory.request(SubmitJob(job=spec), JobAcceptance)
        assert (again.job_id, again.created) == (job_id, False)
        burst = await asyncio.gather(
            *(factory.request(SubmitJob(job=spec), JobAcceptance) for _ in range(8))
        )
        assert {(r.job_id, r.created) for r in burst} == {(job_id, False)}

        submitter = EventPublisher(
            nats_client.jetstream(), source="/training-platform", namespace=namespace
        )
        event = NewEvent(JobSubmitted(job=spec), tenant="globex")
        message = submitter.build(event)
        await submitter.send(message)
        resent = await submitter.send(message)  # the same ce-id: JetStream drops it
        assert resent.duplicate
        await submitter.publish(event)  # a new ce-id: the scheduler's idempotency
        await factory.wait_consumed("FACTORY_JOBS", "scheduling-submissions")

        log = [e.data for e in await factory.replay("FACTORY_JOBS")]
        submitted = [e for e in log if isinstance(e, JobSubmitted)]
        assert len(submitted) == 2, "the stream keeps one copy of the re-sent event"
        assert [e.job_id for e in log if isinstance(e, JobAccepted)] == [job_id]
        assert [(e.job_id, e.attempt) for e in log if isinstance(e, JobPlaced)] == [(job_id, 1)]
        page = await factory.request(ListJobs(tenant="globex"), JobPage)
        assert [(j.job_id, j.state) for j in page.jobs] == [(job_id, "placed")]
    except BaseException:
        print(factory.logs())
        raise
    finally:
        codes = factory.stop()
    assert codes == dict.fromkeys(factory.processes, 0), factory.logs()
