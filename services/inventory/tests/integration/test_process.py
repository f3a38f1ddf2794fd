"""The inventory service as its own OS process: ``python -m aifactory.inventory``."""

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
from aifactory.contracts.inventory.v1 import (
    GetNode,
    ImportFactory,
    ImportSummary,
    NodeDetails,
    NodeStateResult,
    RetireNode,
    UncordonNode,
)
from aifactory.testing.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def inventory_process(
    nats_url: str, namespace: Namespace, database_url: str, nats_client: Client
) -> Iterator[subprocess.Popen[str]]:
    """``python -m aifactory.inventory`` against the test NATS and database; stopped after."""
    env = {
        **os.environ,
        "AIFACTORY_NATS_URL": nats_url,
        "AIFACTORY_SUBJECT_PREFIX": namespace.prefix,
        "AIFACTORY_INVENTORY_DATABASE_URL": database_url,
        "AIFACTORY_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "aifactory.inventory"],
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
        await request(nc, GetNode(node_id="probe"), NodeDetails, namespace=ns, timeout=1)
    except ServiceUnavailable:
        return False
    except CommandFailed:
        return True
    return True


async def test_service_process_imports_changes_state_and_stops_cleanly(
    inventory_process: subprocess.Popen[str],
    nats_client: Client,
    namespace: Namespace,
    small_factory: str,
) -> None:
    """The service process answers commands over NATS, refuses an invalid transition, and exits 0 on SIGTERM."""
    await wait_until(
        lambda: _answering(nats_client, namespace), timeout=30, what="inventory process"
    )
    summary = await request(
        nats_client,
        ImportFactory(description_yaml=small_factory, actor="ci"),
        ImportSummary,
        namespace=namespace,
        timeout=30,
    )
    assert summary.nodes_created == 7
    retired = await request(
        nats_client,
        RetireNode(node_id="gpu-b02", reason="eol", actor="ci"),
        NodeStateResult,
        namespace=namespace,
    )
    assert retired.state == "retired"
    with pytest.raises(CommandFailed) as refused:
        await request(
            nats_client,
            UncordonNode(node_id="gpu-b02", reason="oops", actor="ci"),
            NodeStateResult,
            namespace=namespace,
        )
    assert refused.value.error.code == "conflict"
    inventory_process.send_signal(signal.SIGTERM)
    assert inventory_process.wait(timeout=30) == 0
    assert inventory_process.stdout is not None
    assert "service_started" in inventory_process.stdout.read()
