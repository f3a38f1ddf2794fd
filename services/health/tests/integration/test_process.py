"""The health service as its own OS process: ``python -m aifactory.health``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.contracts.health.v1 import ListNodeHealth, NodeHealthPage
from aifactory.testing.waiting import wait_until

from .conftest import node_record

pytestmark = pytest.mark.integration


@pytest.fixture
def health_process(
    nats_url: str, namespace: Namespace, database_url: str, nats_client: Client
) -> Iterator[subprocess.Popen[str]]:
    """``python -m aifactory.health`` against the test NATS and database; stopped after."""
    env = {
        **os.environ,
        "AIFACTORY_NATS_URL": nats_url,
        "AIFACTORY_SUBJECT_PREFIX": namespace.prefix,
        "AIFACTORY_HEALTH_DATABASE_URL": database_url,
        "AIFACTORY_HEALTH_DEFAULT_INTERVAL": "3",
        "AIFACTORY_HEALTH_TICK": "0.1",
        "AIFACTORY_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "aifactory.health"],
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


async def _page(nc: Client, ns: Namespace) -> NodeHealthPage | None:
    try:
        return await request(nc, ListNodeHealth(), NodeHealthPage, namespace=ns, timeout=1)
    except ServiceUnavailable:
        return None


async def test_service_process_judges_an_agent_process_and_stops_cleanly(
    health_process: subprocess.Popen[str],
    register_nodes,
    spawn_agent,
    nats_client: Client,
    namespace: Namespace,
) -> None:
    """The process expects registered nodes, fails a node whose agent reports ECC DBEs, and exits 0 on SIGTERM."""
    await wait_until(
        lambda: _page(nats_client, namespace), lambda p: p is not None, timeout=30, what="health"
    )
    await register_nodes(node_record("gpu-a001"))
    spawn_agent("gpu-a001", "ecc-dbe", "--fault-after", "2")
    page = await wait_until(
        lambda: _page(nats_client, namespace),
        lambda p: p is not None and p.counts.get("failed") == 1,
        timeout=30,
        what="failed verdict",
    )
    assert page is not None
    assert page.nodes[0].reasons[0].code == "ecc_dbe"
    # The query answers from memory; the verdict is logged once it is committed, which
    # is before its event reaches the stream: wait for the event before stopping.
    stream = namespace.stream("FACTORY_HEALTH")
    await wait_until(
        lambda: nats_client.jetstream().stream_info(stream),
        lambda info: info.state.messages >= 1,
        timeout=30,
        what="the verdict event on the stream",
    )
    health_process.send_signal(signal.SIGTERM)
    assert health_process.wait(timeout=30) == 0
    assert health_process.stdout is not None
    output = health_process.stdout.read()
    assert "service_started" in output
    assert "node_verdict_changed" in output
