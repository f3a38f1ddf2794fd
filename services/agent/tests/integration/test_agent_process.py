"""The agent as a process over real NATS: one process reporting for several nodes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable

import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from aifactory.agent.agent import TELEMETRY_SUBJECT
from aifactory.bus.settings import BusSettings
from aifactory.contracts.health.v1 import NodeTelemetry
from aifactory.testing.waiting import wait_until

pytestmark = pytest.mark.integration


def _returning(seen: set[str]) -> Callable[[], Awaitable[set[str]]]:
    async def probe() -> set[str]:
        return set(seen)

    return probe


async def test_one_process_reports_telemetry_for_every_node_of_nodes(
    nats_url: str, nats_client: Client, bus_settings: BusSettings
) -> None:
    """`python -m aifactory.agent --nodes a,b,c` publishes telemetry for a, b and c; SIGTERM ends it with 0."""
    seen: set[str] = set()

    async def on_telemetry(msg: Msg) -> None:
        seen.add(msgspec.json.decode(msg.data, type=NodeTelemetry).node_id)

    subject = bus_settings.namespace.subject(TELEMETRY_SUBJECT)
    subscription = await nats_client.subscribe(subject, cb=on_telemetry)
    env = {
        **os.environ,
        "AIFACTORY_NATS_URL": nats_url,
        "AIFACTORY_SUBJECT_PREFIX": bus_settings.subject_prefix,
    }
    argv = [sys.executable, "-m", "aifactory.agent", "--nodes", "sim-a,sim-b,sim-c"]
    process = subprocess.Popen(  # noqa: ASYNC220 - a child process the test waits on below
        [*argv, "--interval", "100ms"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_until(
            _returning(seen), lambda nodes: nodes == {"sim-a", "sim-b", "sim-c"}, timeout=30
        )
    finally:
        process.terminate()
        code = await asyncio.to_thread(process.wait, 30)
        await subscription.unsubscribe()
    assert code == 0


async def test_sigusr1_starts_an_armed_fault(
    nats_url: str, nats_client: Client, bus_settings: BusSettings
) -> None:
    """An agent started with --simulate xid:79 --fault-on-signal reports Xid 79 only after SIGUSR1."""
    xids: list[int] = []
    reports: list[str] = []

    async def on_telemetry(msg: Msg) -> None:
        telemetry = msgspec.json.decode(msg.data, type=NodeTelemetry)
        reports.append(telemetry.node_id)
        xids.extend(event.xid for event in telemetry.xids)

    subject = bus_settings.namespace.subject(TELEMETRY_SUBJECT)
    subscription = await nats_client.subscribe(subject, cb=on_telemetry)
    env = {
        **os.environ,
        "AIFACTORY_NATS_URL": nats_url,
        "AIFACTORY_SUBJECT_PREFIX": bus_settings.subject_prefix,
    }
    argv = [sys.executable, "-m", "aifactory.agent", "--node", "sim-x", "--simulate", "xid:79"]
    process = subprocess.Popen(  # noqa: ASYNC220 - a child process the test waits on below
        [*argv, "--fault-on-signal", "--interval", "100ms"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_until(_count(reports), lambda seen: seen >= 5, timeout=30)
        before = list(xids)
        process.send_signal(signal.SIGUSR1)
        await wait_until(_returning_xids(xids), lambda seen: 79 in seen, timeout=30)
    finally:
        process.terminate()
        code = await asyncio.to_thread(process.wait, 30)
        await subscription.unsubscribe()
    assert before == []
    assert code == 0


def _count(items: list[str]) -> Callable[[], Awaitable[int]]:
    async def probe() -> int:
        return len(items)

    return probe


def _returning_xids(xids: list[int]) -> Callable[[], Awaitable[list[int]]]:
    async def probe() -> list[int]:
        return list(xids)

    return probe
