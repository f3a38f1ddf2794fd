"""The telemetry ingest: bad input is dropped and counted, never raised."""

from __future__ import annotations

import msgspec
from structlog.testing import capture_logs

from aifactory.contracts.health.v1 import NodeHeartbeat, NodeTelemetry
from aifactory.contracts.registry import spec_of
from aifactory.health.ingest import TelemetryIngest
from aifactory.health.monitor import HealthMonitor

from ..conftest import T0, telemetry

TELEMETRY = spec_of(NodeTelemetry).subject()
HEARTBEAT = spec_of(NodeHeartbeat).subject()


def test_good_telemetry_is_applied(monitor: HealthMonitor) -> None:
    """A valid message from an expected node is applied and counted."""
    ingest = TelemetryIngest(monitor)
    ingest.receive(TELEMETRY, msgspec.json.encode(telemetry()))
    assert ingest.drain(T0) == 1
    assert (ingest.counters.received, ingest.counters.applied) == (1, 1)
    assert monitor.nodes["gpu-a001"].last_seen == T0


def test_garbage_is_dropped_and_counted(monitor: HealthMonitor) -> None:
    """Malformed bytes, a wrong schema, unknown fields, absurd values and foreign subjects are counted as garbage."""
    ingest = TelemetryIngest(monitor)
    good = msgspec.to_builtins(telemetry())
    bad_bodies = [
        b"\xff\x00not json",
        b'{"node_id": 5}',
        msgspec.json.encode({**good, "surprise": 1}),
        msgspec.json.encode({**good, "gpus": [[0, 9999]]}),
        msgspec.json.encode({**good, "interval_ms": -1}),
    ]
    for body in bad_bodies:
        ingest.receive(TELEMETRY, body)
    ingest.receive(HEARTBEAT, b"[]")
    ingest.receive("factory.health.v1.tlm.something_else", msgspec.json.encode(good))
    with capture_logs() as logs:
        ingest.drain(T0)
    assert ingest.counters.garbage == 7
    assert ingest.counters.applied == 0
    assert [e["event"] for e in logs] == ["telemetry_dropped_garbage"]
    assert monitor.nodes["gpu-a001"].last_seen is None


def test_unknown_node_is_counted_and_reported_once(monitor: HealthMonitor) -> None:
    """Telemetry from a node inventory does not know is counted every time and logged once."""
    ingest = TelemetryIngest(monitor)
    for _ in range(5):
        ingest.receive(TELEMETRY, msgspec.json.encode(telemetry("gpu-ghost")))
    with capture_logs() as logs:
        ingest.drain(T0)
    assert ingest.counters.unknown_node == 5
    assert [e["node_id"] for e in logs if e["event"] == "telemetry_from_unknown_node"] == [
        "gpu-ghost"
    ]
    assert ingest.stats().unknown_node_ids == ["gpu-ghost"]


def test_full_buffer_drops_and_counts_overflow(monitor: HealthMonitor) -> None:
    """Beyond the buffer limit new messages are dropped and counted, memory stays bounded."""
    ingest = TelemetryIngest(monitor, max_buffer=3)
    body = msgspec.json.encode(telemetry())
    for _ in range(5):
        ingest.receive(TELEMETRY, body)
    assert ingest.buffered == 3
    assert ingest.counters.overflow == 2
    assert ingest.drain(T0) == 3
