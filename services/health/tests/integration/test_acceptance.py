"""Acceptance over a real nats-server, with simulated agents as separate processes."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from aifactory.bus.rpc import request
from aifactory.bus.settings import Namespace
from aifactory.contracts.health.v1 import (
    AlertRaised,
    AlertReport,
    ListAlerts,
    SilenceNode,
    SilenceView,
)
from aifactory.contracts.registry import spec_of
from aifactory.testing.collector import CollectedEvents, collect_events
from aifactory.testing.waiting import wait_until

from .conftest import HealthFactory, decoded, heard_from, node_record, verdict_of

pytestmark = pytest.mark.integration


async def _until(predicate, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    async def probe() -> bool:
        return bool(predicate())

    await wait_until(probe, timeout=timeout, what=what)


async def test_fatal_xid_fails_the_node_and_only_that_node(
    start_health: HealthFactory, register_nodes, spawn_agent, verdicts: CollectedEvents
) -> None:
    """An agent reporting Xid 79 makes its node failed (GPU fell off the bus); the healthy node gets no event."""
    service = await start_health()
    await register_nodes(node_record("gpu-a001"), node_record("gpu-a002"))
    await _until(lambda: len(service.monitor.nodes) == 2, "nodes expected")
    spawn_agent("gpu-a001", "xid:79", "--fault-after", "5")
    spawn_agent("gpu-a002", "healthy")
    await _until(lambda: verdict_of(service, "gpu-a001") == "failed", "failed verdict")
    await verdicts.wait_for(1)
    (event,) = decoded(verdicts)
    assert (event.node_id, event.verdict, event.previous_verdict) == (
        "gpu-a001",
        "failed",
        "healthy",
    )
    assert {r.code for r in event.reasons} >= {"xid_79"}
    assert event.recommended_action == "reset"
    assert verdict_of(service, "gpu-a002") == "healthy"


async def test_stopped_agent_is_unreachable_then_healthy_when_restarted(
    start_health: HealthFactory, register_nodes, spawn_agent, verdicts: CollectedEvents
) -> None:
    """Stopping an agent makes its node unreachable; restarting it makes it healthy again; the other node never changes."""
    service = await start_health()
    await register_nodes(node_record("gpu-a001"), node_record("gpu-a002"))
    await _until(lambda: len(service.monitor.nodes) == 2, "nodes expected")
    first = spawn_agent("gpu-a001")
    spawn_agent("gpu-a002")
    await _until(
        lambda: heard_from(service, "gpu-a001") and heard_from(service, "gpu-a002"), "agents"
    )
    assert first.stop() == 0
    await _until(lambda: verdict_of(service, "gpu-a001") == "unreachable", "unreachable")
    spawn_agent("gpu-a001")
    await _until(lambda: verdict_of(service, "gpu-a001") == "healthy", "healthy again")
    await verdicts.wait_for(2)
    assert [(e.node_id, e.verdict) for e in decoded(verdicts)] == [
        ("gpu-a001", "unreachable"),
        ("gpu-a001", "healthy"),
    ]


async def test_restarting_the_health_service_raises_no_false_alarm(
    start_health: HealthFactory, register_nodes, spawn_agent, verdicts: CollectedEvents
) -> None:
    """A health service restarted on the same database keeps live nodes healthy and a failed node failed, with no event."""
    service = await start_health()
    await register_nodes(node_record("gpu-a001"), node_record("gpu-a002"))
    await _until(lambda: len(service.monitor.nodes) == 2, "nodes expected")
    spawn_agent("gpu-a001", "ecc-dbe", "--fault-after", "2")
    spawn_agent("gpu-a002")
    await _until(lambda: verdict_of(service, "gpu-a001") == "failed", "failed verdict")
    await verdicts.wait_for(1)
    await service.stop()
    await asyncio.sleep(1.0)  # the agents keep reporting while no health service runs
    restarted = await start_health()
    assert verdict_of(restarted, "gpu-a001") == "failed"
    await _until(
        lambda: heard_from(restarted, "gpu-a001") and heard_from(restarted, "gpu-a002"), "agents"
    )
    ticks = restarted.engine.ticks
    await _until(lambda: restarted.engine.ticks >= ticks + 30, "30 ticks after the restart")
    assert [(e.node_id, e.verdict) for e in decoded(verdicts)] == [("gpu-a001", "failed")]
    assert verdict_of(restarted, "gpu-a002") == "healthy"
    assert verdict_of(restarted, "gpu-a001") == "failed"


async def test_silence_suppresses_the_alert_until_it_expires(
    start_health: HealthFactory,
    register_nodes,
    spawn_agent,
    nats_client: Client,
    namespace: Namespace,
) -> None:
    """An alert of a silenced node is recorded but announced only when the silence expires; the history shows it."""
    service = await start_health()
    await register_nodes(node_record("gpu-a001"))
    await _until(lambda: len(service.monitor.nodes) == 1, "node expected")
    silence = await request(
        nats_client,
        SilenceNode(node_id="gpu-a001", duration_s=8, reason="burn-in", actor="test"),
        SilenceView,
        namespace=namespace,
    )
    assert silence.reason == "burn-in"
    raised_subject = namespace.subject(spec_of(AlertRaised).subject_filter)
    async with collect_events(nats_client, raised_subject) as raised:
        spawn_agent("gpu-a001", "overheat", "--fault-after", "1")
        await _until(lambda: verdict_of(service, "gpu-a001") == "failed", "thermal failure")
        report = await request(nats_client, ListAlerts(), AlertReport, namespace=namespace)
        open_alerts = [a for g in report.groups for a in g.alerts]
        assert open_alerts
        assert all(a.silenced and not a.announced for a in open_alerts)
        assert [s.silence_id for s in report.silences] == [silence.silence_id]
        assert raised.messages == []
        await raised.wait_for(1, timeout=30)
    announced = [m for m in raised.envelopes() if m.data.node_id == "gpu-a001"]
    assert announced[0].data.rule in {"thermal_hot", "thermal_critical"}
    history = await request(
        nats_client, ListAlerts(include_resolved=True), AlertReport, namespace=namespace
    )
    assert history.groups[0].rack_id == "fra1-r01"
    assert any(a.announced for a in history.groups[0].alerts)


async def test_flapping_node_is_detected(
    start_health: HealthFactory, register_nodes, spawn_agent, verdicts: CollectedEvents
) -> None:
    """A node flapping between hot and normal is held degraded with a quarantine recommendation and a flapping reason."""
    service = await start_health()
    await register_nodes(node_record("gpu-a001"))
    await _until(lambda: len(service.monitor.nodes) == 1, "node expected")
    spawn_agent("gpu-a001", "flapping", "--fault-after", "1")

    def quarantined() -> bool:
        node = service.monitor.nodes["gpu-a001"]
        return node.action == "quarantine" and "flapping" in {r.code for r in node.reasons}

    await _until(quarantined, "flapping detected", timeout=40)

    def quarantine_published() -> bool:
        events = decoded(verdicts)
        return bool(events) and events[-1].recommended_action == "quarantine"

    await _until(quarantine_published, "the quarantine verdict event")
    events = decoded(verdicts)
    assert [e.verdict for e in events] == ["degraded"] * len(events)
    assert events[-1].recommended_action == "quarantine"
    assert len(events) <= 3
