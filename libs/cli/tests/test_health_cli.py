"""``aifactory health``, ``alerts``, ``silence`` and ``agent`` against a real health service."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client

from aifactory.bus.connection import Bus
from aifactory.bus.rpc import request
from aifactory.bus.settings import BusSettings
from aifactory.contracts.health.v1 import AlertReport, ListAlerts
from aifactory.contracts.inventory.v1 import Node, NodeRegistered
from aifactory.health.app import HealthService, build_service
from aifactory.health.config import HealthSettings
from aifactory.health.rules import RuleSettings
from aifactory.store.events import NewEvent
from aifactory.testing.waiting import wait_until

pytestmark = pytest.mark.integration
Cli = Callable[..., subprocess.CompletedProcess[str]]


def _node(node_id: str) -> Node:
    now = dt.datetime.now(dt.UTC)
    return Node(
        node_id=node_id,
        site_id="fra1",
        rack_id="fra1-r01",
        model="B200",
        accelerator_count=8,
        accelerator_memory_gib=180,
        cpu_cores=112,
        ram_gib=2048,
        state="available",
        state_changed_at=now,
        registered_at=now,
        updated_at=now,
    )


@pytest_asyncio.fixture
async def health_service(
    bus_settings: BusSettings, tmp_path: Path, nats_client: object
) -> AsyncIterator[HealthService]:
    """A health service (SQLite, fast rules) expecting gpu-a001 and gpu-a002."""
    service = build_service(
        HealthSettings(
            bus=bus_settings,
            database_url=f"sqlite:///{tmp_path / 'health.db'}",
            tick_s=0.1,
            rules=RuleSettings(default_interval_s=5.0, recovery_dwell_s=1.0),
        )
    )
    await service.start()
    bus = await Bus(bus_settings, service="inventory").connect()
    for node_id in ("gpu-a001", "gpu-a002"):
        await bus.publisher.publish(
            NewEvent(NodeRegistered(node=_node(node_id), actor="test"), scope="fra1")
        )
    await bus.close()

    async def expected() -> int:
        return len(service.monitor.nodes)

    await wait_until(expected, lambda n: n == 2, what="nodes expected")
    yield service
    await service.stop()


def _env(namespaced_env: dict[str, str], nats_url: str) -> dict[str, str]:
    return {**namespaced_env, "AIFACTORY_NATS_URL": nats_url}


async def _in_thread(
    cli: Cli, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run the CLI without blocking the event loop the in-process service runs on."""
    return await asyncio.to_thread(cli, args, env)


async def test_agent_health_silence_and_alerts(
    health_service: HealthService,
    cli: Cli,
    spawn_cli,
    namespaced_env: dict[str, str],
    nats_url: str,
    nats_client: Client,
) -> None:
    """`aifactory agent` runs a simulated agent; `health` shows its node failed; `silence` and `alerts` show the rest."""
    env = _env(namespaced_env, nats_url)
    silenced = await _in_thread(
        cli, ["silence", "gpu-a002", "--for", "2h", "--reason", "cable swap"], env
    )
    assert silenced.returncode == 0, silenced.stderr
    assert "silenced gpu-a002 (all rules) until" in silenced.stdout
    spawn_cli(
        [
            "agent",
            "--node",
            "gpu-a001",
            "--interval",
            "200ms",
            "--simulate",
            "xid:79",
            "--fault-after",
            "1",
        ],
        env,
    )
    spawn_cli(["agent", "--node", "gpu-a002", "--interval", "200ms", "--simulate", "overheat"], env)

    async def failed_nodes() -> int:
        return sum(1 for n in health_service.monitor.nodes.values() if n.verdict == "failed")

    await wait_until(failed_nodes, lambda n: n == 2, timeout=30, what="two failed nodes")

    async def saved_alerts() -> int:
        report = await request(
            nats_client, ListAlerts(), AlertReport, namespace=health_service.service.bus.namespace
        )
        return report.total

    await wait_until(saved_alerts, lambda n: n >= 2, what="the alerts saved")
    table = await _in_thread(cli, ["health", "--state", "failed"], env)
    assert table.returncode == 0, table.stderr
    assert "gpu-a001" in table.stdout
    assert "xid_79" in table.stdout
    assert "verdicts: healthy 0, degraded 0, failed 2, unreachable 0" in table.stdout
    rows = await _in_thread(cli, ["health", "--json"], env)
    assert {json.loads(line)["verdict"] for line in rows.stdout.splitlines()} == {"failed"}
    listed = await _in_thread(cli, ["alerts"], env)
    assert listed.returncode == 0, listed.stderr
    assert "rack fra1-r01 (site fra1)" in listed.stdout
    assert "xid_79" in listed.stdout
    assert "[silenced]" in listed.stdout
    assert "silence " in listed.stdout
    assert "cable swap" in listed.stdout
    history = await _in_thread(cli, ["alerts", "--all", "--json"], env)
    report = json.loads(history.stdout)
    assert report["total"] >= 2


async def test_refusals_are_one_clear_line(
    health_service: HealthService, cli: Cli, namespaced_env: dict[str, str], nats_url: str
) -> None:
    """Bad options and refused commands print one line on stderr with a non-zero exit code."""
    env = _env(namespaced_env, nats_url)
    bad_state = await _in_thread(cli, ["health", "--state", "sick"], env)
    assert bad_state.returncode == 2
    assert "--state must be one of" in bad_state.stderr
    bad_duration = await _in_thread(
        cli, ["silence", "gpu-a001", "--for", "soon", "--reason", "x"], env
    )
    assert bad_duration.returncode == 2
    assert "--for takes a duration" in bad_duration.stderr
    unknown = await _in_thread(cli, ["silence", "gpu-zzz", "--for", "1h", "--reason", "x"], env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().startswith("aifactory silence: not_found")
    bad_agent = await _in_thread(cli, ["agent", "--node", "n1", "--simulate", "lava"], env)
    assert bad_agent.returncode == 2
    assert "unknown simulator profile" in bad_agent.stderr
