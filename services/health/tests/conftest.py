"""Shared builders for health tests: telemetry samples and a monitor with expected nodes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from aifactory.contracts.health.v1 import GpuSample, NodeTelemetry, XidEvent
from aifactory.health.domain import NodeInfo
from aifactory.health.monitor import HealthMonitor
from aifactory.health.rules import RuleSettings

T0 = 1_800_000_000.0
"""A fixed epoch second to run the pure tests at."""

FAST_RULES = RuleSettings(recovery_dwell_s=5.0, flap_threshold=3, flap_window_s=60.0)


def gpus(count: int = 8, **faults: object) -> list[GpuSample]:
    """``count`` healthy GPU samples; ``faults`` set fields of the last one."""
    samples = [
        GpuSample(index=i, temperature_c=55, ecc_dbe_volatile=0, nvlink_errors=0)
        for i in range(count)
    ]
    if faults:
        last = samples[-1]
        samples[-1] = GpuSample(
            **{**{f: getattr(last, f) for f in last.__struct_fields__}, **faults}
        )  # type: ignore[arg-type]
    return samples


def telemetry(
    node_id: str = "gpu-a001",
    *,
    samples: list[GpuSample] | None = None,
    xids: list[tuple[int, int, float]] = (),  # type: ignore[assignment]
    session: str = "s1",
    seq: int = 1,
    interval_ms: int = 1000,
) -> NodeTelemetry:
    """A telemetry message (healthy 8-GPU node unless told otherwise)."""
    return NodeTelemetry(
        node_id=node_id,
        session=session,
        seq=seq,
        sent_at=dt.datetime.fromtimestamp(T0, dt.UTC),
        interval_ms=interval_ms,
        source="simulated",
        gpus=gpus() if samples is None else samples,
        xids=[
            XidEvent(gpu=g, xid=x, at=dt.datetime.fromtimestamp(at, dt.UTC)) for g, x, at in xids
        ],
    )


@pytest.fixture
def monitor() -> HealthMonitor:
    """A monitor with fast rules expecting gpu-a001 (8 GPUs, rack fra1-r01) from T0."""
    built = HealthMonitor(FAST_RULES, started=T0)
    built.upsert_node(NodeInfo("gpu-a001", "fra1", "fra1-r01", 8), now=T0)
    return built


def add_second_node(monitor: HealthMonitor) -> None:
    """Also expect gpu-a002 (same rack) from T0."""
    monitor.upsert_node(NodeInfo("gpu-a002", "fra1", "fra1-r01", 8), now=T0)


@pytest.fixture
def feed(monitor: HealthMonitor) -> Callable[..., None]:
    """``feed(t0, t1, step, **telemetry kwargs)``: every expected node reports every ``step`` s in [t0, t1)."""

    def run(start: float, end: float, step: float = 1.0, **kwargs: object) -> None:
        moment = start
        while moment < end:
            for node_id in list(monitor.nodes):
                monitor.observe_telemetry(telemetry(node_id, **kwargs), moment)  # type: ignore[arg-type]
            moment += step

    return run
