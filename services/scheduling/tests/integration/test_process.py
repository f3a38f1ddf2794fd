"""The scheduling service as its own OS process: ``python -m aifactory.scheduling``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.contracts.jobs.v1 import (
    ExplainQueue,
    JobAcceptance,
    QueueExplanation,
    SetQuota,
    SubmitJob,
    TenantQuota,
)
from aifactory.testing.waiting import wait_until

from ..conftest import small_factory, spec
from .conftest import Feed

pytestmark = pytest.mark.integration


@pytest.fixture
def scheduling_process(
    nats_url: str, namespace: Namespace, database_url: str, nats_client: Client
) -> Iterator[subprocess.Popen[str]]:
    """``python -m aifactory.scheduling`` against the test NATS and database; stopped after."""
    env = {
        **os.environ,
        "AIFACTORY_NATS_URL": nats_url,
        "AIFACTORY_SUBJECT_PREFIX": namespace.prefix,
        "AIFACTORY_SCHEDULING_DATABASE_URL": database_url,
        "AIFACTORY_SCHEDULING_KEY_CUSTODY": "off",
        "AIFACTORY_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "aifactory.scheduling"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def _answering(nc: Client, ns: Namespace) -> bool:
    try:
        await request(nc, ExplainQueue(), QueueExplanation, namespace=ns, timeout=1)
    except (ServiceUnavailable, CommandFailed):
        return False
    return True


async def test_service_process_places_refuses_and_stops_cleanly(
    scheduling_process: subprocess.Popen[str],
    nats_client: Client,
    namespace: Namespace,
    feed: Feed,
) -> None:
    """The process consumes inventory events, places a job, refuses a malformed one and exits 0 on SIGTERM."""
    await wait_until(
        lambda: _answering(nats_client, namespace), timeout=30, what="scheduling process"
    )
    await feed.send(small_factory())
    await request(
        nats_client,
        SetQuota(tenant="acme", model="B200", accelerators=64, actor="ops"),
        TenantQuota,
        namespace=namespace,
    )

    async def placed() -> str:
        try:
            reply = await request(
                nats_client,
                SubmitJob(job=spec("p-1", sites=("iad1",))),
                JobAcceptance,
                namespace=namespace,
            )
        except CommandFailed as refused:
            return refused.error.details.get("reason", "")
        return reply.state

    assert (
        await wait_until(placed, lambda s: s == "placed", timeout=20, what="placement") == "placed"
    )
    raw = await nats_client.request(
        namespace.subject("factory.jobs.v1.cmd.submit_job"),
        b'{"job": {"tenant": "acme", "accelerators": -1}}',
        headers={
            "ce-specversion": "1.0",
            "ce-id": "x-1",
            "ce-source": "test",
            "ce-type": "io.aifactory.jobs.submit_job.v1",
            "content-type": "application/json",
        },
        timeout=5,
    )
    assert raw.headers is not None
    assert raw.headers["ce-type"] == "io.aifactory.error.v1"
    assert b"invalid_request" in raw.data
    scheduling_process.send_signal(signal.SIGTERM)
    assert scheduling_process.wait(timeout=30) == 0
    assert scheduling_process.stdout is not None
    assert "service_started" in scheduling_process.stdout.read()
