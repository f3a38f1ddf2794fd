"""Health and inventory together, each its own process, with simulated agents as processes.

The flow of DESIGN.md "Fail": a factory is imported into inventory; inventory's node
events tell the health service which nodes to expect; agents report; one agent's GPU
falls off the bus (Xid 79) -> the health service publishes a failed verdict ->
inventory marks that node failed, and only that node.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.contracts.health.v1 import ListNodeHealth, NodeHealthPage
from aifactory.contracts.inventory.v1 import GetNode, ImportFactory, ImportSummary, NodeDetails
from aifactory.testing.processes import ServiceProcess
from aifactory.testing.waiting import wait_until

pytestmark = pytest.mark.integration

FACTORY = """\
version: 1
sites:
  - id: fra1
    name: Frankfurt 1
    region: eu-central
    jurisdiction: EU/DE
racks:
  - id: fra1-r01
    site: fra1
    kind: HGX-B200
    nvlink_domain_size: 8
nodes:
  - id: gpu-a[001-002]
    site: fra1
    rack: fra1-r01
    model: B200
    accelerator_count: 8
    accelerator_memory_gib: 180
    cpu_cores: 112
    ram_gib: 2048
"""


@pytest.fixture
def agents(nats_url: str, namespace: Namespace) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Agent processes started by the test; killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _agent(
    nats_url: str, namespace: Namespace, node_id: str, profile: str
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AIFACTORY_NATS_URL": nats_url,
        "AIFACTORY_SUBJECT_PREFIX": namespace.prefix,
        "AIFACTORY_LOG_LEVEL": "WARNING",
    }
    argv = ["--node", node_id, "--interval", "200ms", "--simulate", profile, "--fault-after", "10"]
    return subprocess.Popen(
        [sys.executable, "-m", "aifactory.agent", *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _answers(nc: Client, ns: Namespace) -> bool:
    try:
        await request(nc, ListNodeHealth(), NodeHealthPage, namespace=ns, timeout=1)
        await request(nc, GetNode(node_id="probe"), NodeDetails, namespace=ns, timeout=1)
    except ServiceUnavailable:
        return False
    except CommandFailed:
        return True
    return True


async def test_fatal_xid_makes_inventory_fail_the_node(
    nats_url: str,
    namespace: Namespace,
    nats_client: Client,
    tmp_path: Path,
    agents: list[subprocess.Popen[bytes]],
) -> None:
    """An agent's Xid 79 gives a failed verdict and inventory marks that node failed; the healthy node stays available."""
    prefix = namespace.prefix
    with (
        ServiceProcess(
            "inventory",
            nats_url=nats_url,
            prefix=prefix,
            database_url=f"sqlite:///{tmp_path / 'inv.db'}",
        ) as inventory,
        ServiceProcess(
            "health",
            nats_url=nats_url,
            prefix=prefix,
            database_url=f"sqlite:///{tmp_path / 'health.db'}",
            env={"AIFACTORY_HEALTH_DEFAULT_INTERVAL": "5", "AIFACTORY_HEALTH_TICK": "0.1"},
        ) as health,
    ):
        await wait_until(lambda: _answers(nats_client, namespace), timeout=60, what="services")
        summary = await request(
            nats_client,
            ImportFactory(description_yaml=FACTORY, actor="e2e"),
            ImportSummary,
            namespace=namespace,
            timeout=30,
        )
        assert summary.nodes_created == 2
        await wait_until(
            lambda: request(nats_client, ListNodeHealth(), NodeHealthPage, namespace=namespace),
            lambda page: page.total == 2,
            what="health expects the imported nodes",
        )
        agents.append(_agent(nats_url, namespace, "gpu-a001", "xid:79"))
        agents.append(_agent(nats_url, namespace, "gpu-a002", "healthy"))

        async def state(node_id: str) -> str:
            reply = await request(
                nats_client, GetNode(node_id=node_id), NodeDetails, namespace=namespace
            )
            return reply.node.state

        failed = await wait_until(
            lambda: state("gpu-a001"),
            lambda s: s == "failed",
            timeout=60,
            what="inventory marks gpu-a001 failed",
        )
        assert failed == "failed"
        details = await request(
            nats_client, GetNode(node_id="gpu-a001"), NodeDetails, namespace=namespace
        )
        assert "xid_79" in details.node.state_reason
        assert await state("gpu-a002") == "available"
        page = await request(nats_client, ListNodeHealth(), NodeHealthPage, namespace=namespace)
        assert page.counts == {"failed": 1, "healthy": 1}
        assert health.stop() == 0
        assert inventory.stop() == 0
