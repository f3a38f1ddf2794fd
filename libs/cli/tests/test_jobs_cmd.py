"""``aifactory submit``, ``jobs``, ``job`` and ``queue`` against a real scheduling service."""

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

from aifactory.bus.publisher import EventPublisher
from aifactory.bus.rpc import request
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.contracts.inventory.v1 import Node, NodeRegistered, RackRegistered, SiteRegistered
from aifactory.contracts.jobs.v1 import SetQuota, TenantQuota
from aifactory.scheduling.app import SchedulingService, build_service
from aifactory.scheduling.config import SchedulingSettings
from aifactory.scheduling.custody import StaticKeyCustody
from aifactory.store.events import NewEvent
from aifactory.testing.waiting import wait_until

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[3] / "deploy" / "examples" / "job.yaml"
NOW = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)
Cli = Callable[..., subprocess.CompletedProcess[str]]


def _node(node_id: str) -> NewEvent:
    node = Node(
        node_id=node_id,
        site_id="fra1",
        rack_id="fra1-r1",
        model="B200",
        accelerator_count=8,
        accelerator_memory_gib=180,
        cpu_cores=112,
        ram_gib=2048,
        state="available",
        state_changed_at=NOW,
        registered_at=NOW,
        updated_at=NOW,
    )
    return NewEvent(NodeRegistered(node=node, actor="ci"), scope="fra1")


@pytest_asyncio.fixture
async def scheduling(
    bus_settings: BusSettings, tmp_path: Path, nats_client: Client, namespace: Namespace
) -> AsyncIterator[SchedulingService]:
    """A scheduling service (SQLite) that knows 4 B200 nodes at fra1 (EU/DE) and one tenant."""
    service = build_service(
        SchedulingSettings(bus=bus_settings, database_url=f"sqlite:///{tmp_path / 's.db'}"),
        custody=StaticKeyCustody(allow_unknown=True),
    )
    await service.start()
    feed = EventPublisher(nats_client.jetstream(), source="/test", namespace=namespace)
    await feed.publish_many(
        [
            NewEvent(
                SiteRegistered(site_id="fra1", jurisdiction="EU/DE", actor="ci"), scope="fra1"
            ),
            NewEvent(
                RackRegistered(
                    rack_id="fra1-r1", site_id="fra1", kind="HGX", nvlink_domain_size=8, actor="ci"
                ),
                scope="fra1",
            ),
            *[_node(f"b{n}") for n in range(4)],
        ]
    )

    async def nodes() -> int:
        return len(service.scheduler.engine.index.nodes)

    await wait_until(nodes, lambda n: n == 4, what="capacity view")
    await request(
        nats_client,
        SetQuota(tenant="bund-research", model="*", accelerators=64, actor="ci"),
        TenantQuota,
        namespace=namespace,
    )
    yield service
    await service.stop()


async def _in_thread(
    cli: Cli, args: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, args, env)


async def test_submit_list_queue_cancel_round_trip(
    scheduling: SchedulingService,
    cli: Cli,
    namespaced_env: dict[str, str],
    nats_url: str,
    tmp_path: Path,
) -> None:
    """The example job is placed, resubmitting it is recognised, a second job waits with its reason, cancel frees it."""
    env = {**namespaced_env, "AIFACTORY_NATS_URL": nats_url}
    first = await _in_thread(cli, ["submit", str(EXAMPLE)], env)
    assert first.returncode == 0, first.stderr
    assert "llm-pretrain-2026-11-26: j-" in first.stdout
    assert " placed" in first.stdout
    job_id = first.stdout.split(": ")[1].split()[0]
    again = await _in_thread(cli, ["submit", str(EXAMPLE)], env)
    assert f"{job_id} placed (already submitted)" in again.stdout
    second = tmp_path / "second.yaml"
    second.write_text(EXAMPLE.read_text().replace("llm-pretrain-2026-11-26", "second-run"))
    waiting = await _in_thread(cli, ["submit", str(second)], env)
    assert "queued [insufficient_capacity]" in waiting.stdout
    listed = await _in_thread(cli, ["jobs", "--tenant", "bund-research", "--json"], env)
    states = sorted(json.loads(line)["state"] for line in listed.stdout.splitlines())
    assert states == ["placed", "queued"]
    queue = await _in_thread(cli, ["queue"], env)
    assert "1 waiting" in queue.stdout
    assert ": insufficient_capacity: " in queue.stdout
    cancelled = await _in_thread(cli, ["job", "cancel", job_id, "--reason", "superseded"], env)
    assert f"{job_id}: placed -> cancelled" in cancelled.stdout
    queue_after = await _in_thread(cli, ["queue"], env)
    assert "no job is waiting" in await _wait_text(
        cli, ["queue"], env, "no job is waiting", queue_after
    )


async def _wait_text(
    cli: Cli,
    args: list[str],
    env: dict[str, str],
    text: str,
    first: subprocess.CompletedProcess[str],
) -> str:
    result = first
    for _ in range(50):
        if text in result.stdout:
            return result.stdout
        await asyncio.sleep(0.1)
        result = await _in_thread(cli, args, env)
    return result.stdout


async def test_bad_input_is_one_clear_line(
    scheduling: SchedulingService,
    cli: Cli,
    namespaced_env: dict[str, str],
    nats_url: str,
    tmp_path: Path,
) -> None:
    """An invalid job file, an impossible job and an unknown job id each fail with one line and no traceback."""
    env = {**namespaced_env, "AIFACTORY_NATS_URL": nats_url}
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenant: bund-research\naccelerators: -4\n")
    invalid = await _in_thread(cli, ["submit", str(bad)], env)
    assert invalid.returncode == 2
    assert "Traceback" not in invalid.stderr
    huge = tmp_path / "huge.yaml"
    huge.write_text(EXAMPLE.read_text().replace("accelerators: 32 ", "accelerators: 64 "))
    impossible = await _in_thread(cli, ["submit", str(huge)], env)
    assert impossible.returncode == 1
    assert "rejected [exceeds_factory]" in impossible.stdout
    unknown = await _in_thread(cli, ["job", "cancel", "j-nope"], env)
    assert unknown.returncode == 1
    assert "not_found" in unknown.stderr
