"""The monitor: one verdict per node, published only when it changes, alerts and silences."""

from __future__ import annotations

from collections.abc import Callable

from aifactory.contracts.health.v1 import NodeHeartbeat
from aifactory.health.alerts import Silence
from aifactory.health.domain import NodeInfo, timestamp
from aifactory.health.monitor import Changes, HealthMonitor

from ..conftest import FAST_RULES, T0, add_second_node, gpus, telemetry

Feed = Callable[..., None]


def _verdicts(changes: Changes) -> list[tuple[str, str, str]]:
    return [(c.node.node_id, c.decision.verdict, c.decision.action) for c in changes.verdicts]


def _alerts(changes: Changes) -> list[tuple[str, str, str, bool]]:
    return [(c.kind, c.node_id, c.alert.rule, c.announce) for c in changes.alerts]


def test_healthy_nodes_publish_nothing(monitor: HealthMonitor, feed: Feed) -> None:
    """Nodes that report normally keep their verdict and no change is published, tick after tick."""
    add_second_node(monitor)
    for second in range(30):
        feed(T0 + second, T0 + second + 1)
        assert not monitor.evaluate(T0 + second + 0.5)


def test_fatal_xid_fails_the_node_at_once_with_an_announced_alert(
    monitor: HealthMonitor, feed: Feed
) -> None:
    """A fatal Xid makes the node failed (reset) on the next evaluation and opens one critical alert."""
    feed(T0, T0 + 3)
    monitor.observe_telemetry(telemetry(xids=[(7, 79, T0 + 3)]), T0 + 3)
    changes = monitor.evaluate(T0 + 3.1)
    assert _verdicts(changes) == [("gpu-a001", "failed", "reset")]
    decision = changes.verdicts[0].decision
    assert decision.previous == "healthy"
    assert decision.first_seen == T0 + 3.1
    assert [r.code for r in decision.reasons] == ["xid_79"]
    assert _alerts(changes) == [("opened", "gpu-a001", "xid_79", True)]
    assert changes.alerts[0].alert.severity == "critical"


def test_repeated_samples_of_the_same_fault_change_nothing(monitor: HealthMonitor) -> None:
    """The same failed condition reported again neither re-publishes the verdict nor re-opens the alert."""
    monitor.observe_telemetry(telemetry(samples=gpus(ecc_dbe_volatile=2)), T0)
    assert _verdicts(monitor.evaluate(T0 + 0.1)) == [("gpu-a001", "failed", "reset")]
    for step in range(1, 20):
        monitor.observe_telemetry(telemetry(samples=gpus(ecc_dbe_volatile=2 + step)), T0 + step)
        assert not monitor.evaluate(T0 + step + 0.1)


def test_silent_node_is_unreachable_after_n_intervals_and_healthy_after_dwell(
    monitor: HealthMonitor,
) -> None:
    """Silence for 3 intervals makes the node unreachable; reporting again returns it to healthy only after the dwell."""
    add_second_node(monitor)
    monitor.observe_telemetry(telemetry(), T0)
    monitor.observe_telemetry(telemetry("gpu-a002"), T0)
    assert not monitor.evaluate(T0 + 2.9)
    monitor.observe_telemetry(telemetry("gpu-a002"), T0 + 2.9)
    lost = monitor.evaluate(T0 + 3.0)
    assert _verdicts(lost) == [("gpu-a001", "unreachable", "reset")]
    assert _alerts(lost) == [("opened", "gpu-a001", "heartbeat_lost", True)]
    monitor.observe_telemetry(telemetry(session="s2"), T0 + 10)
    monitor.observe_telemetry(telemetry("gpu-a002"), T0 + 10)
    assert not monitor.evaluate(T0 + 10.1)
    for second in range(11, 16):
        monitor.observe_telemetry(telemetry(session="s2"), T0 + second)
        monitor.observe_telemetry(telemetry("gpu-a002"), T0 + second)
        back = monitor.evaluate(T0 + second + 0.2)
        if back:
            break
    assert _verdicts(back) == [("gpu-a001", "healthy", "none")]
    assert back.verdicts[0].decision.previous == "unreachable"
    assert _alerts(back) == [("resolved", "gpu-a001", "heartbeat_lost", True)]


def test_never_heard_node_gets_a_grace_period(monitor: HealthMonitor) -> None:
    """A node that never reported is judged only after missed_intervals of the default interval."""
    add_second_node(monitor)
    monitor.observe_telemetry(telemetry("gpu-a002"), T0 + 2)
    assert not monitor.evaluate(T0 + 2.5)
    assert _verdicts(monitor.evaluate(T0 + 3.0)) == [("gpu-a001", "unreachable", "reset")]


def test_nodes_in_maintenance_are_not_expected_to_heartbeat(monitor: HealthMonitor) -> None:
    """A node in maintenance is never unreachable; back to available it gets a fresh grace."""
    monitor.upsert_node(NodeInfo("gpu-a001", "fra1", "fra1-r01", 8, "maintenance"), now=T0)
    assert not monitor.evaluate(T0 + 9.5)
    monitor.upsert_node(NodeInfo("gpu-a001", "fra1", "fra1-r01", 8, "available"), now=T0 + 10)
    assert not monitor.evaluate(T0 + 12)
    assert _verdicts(monitor.evaluate(T0 + 13.1)) == [("gpu-a001", "unreachable", "reset")]


def test_recovery_waits_for_the_dwell_and_restarts_it_on_relapse(monitor: HealthMonitor) -> None:
    """A cooled GPU is published healthy only after 5 s of staying cool; a relapse within the dwell restarts it."""
    temperatures = [88, 60, 60, 88, 60, 60, 60, 60, 60, 60]
    published = {}
    for second, temperature in enumerate(temperatures):
        monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=temperature)), T0 + second)
        published[second] = _verdicts(monitor.evaluate(T0 + second))
    assert published[0] == [("gpu-a001", "degraded", "none")]
    assert all(published[s] == [] for s in range(1, 9))
    assert published[9] == [("gpu-a001", "healthy", "none")]


def test_flapping_node_is_held_degraded_with_quarantine(monitor: HealthMonitor) -> None:
    """Three worsenings within the flap window make the node flapping: degraded, quarantine, a flapping alert."""
    published = []
    alerts = []
    for cycle in range(4):
        start = T0 + cycle * 4
        monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=90)), start)
        changes = monitor.evaluate(start)
        monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=60)), start + 2)
        changes.extend(monitor.evaluate(start + 2))
        published.extend(_verdicts(changes))
        alerts.extend(_alerts(changes))
    assert published == [
        ("gpu-a001", "degraded", "none"),
        ("gpu-a001", "degraded", "quarantine"),
    ]
    assert ("opened", "gpu-a001", "flapping", True) in alerts
    node = monitor.nodes["gpu-a001"]
    assert {r.code for r in node.reasons} >= {"flapping"}


def test_repeated_failures_recommend_quarantine(monitor: HealthMonitor) -> None:
    """Three entries into failed within the failure window recommend quarantine, even once recovered."""
    rules_dwell = FAST_RULES.recovery_dwell_s
    moment = T0
    actions = []
    for _ in range(3):
        monitor.observe_telemetry(
            telemetry(samples=gpus(ecc_dbe_volatile=1), session=f"s{moment}"), moment
        )
        actions.extend(_verdicts(monitor.evaluate(moment)))
        moment += 1
        monitor.observe_telemetry(telemetry(session=f"r{moment}"), moment)
        monitor.evaluate(moment)
        moment += rules_dwell + 1
        monitor.observe_telemetry(telemetry(session=f"r{moment - rules_dwell - 1}"), moment)
        actions.extend(_verdicts(monitor.evaluate(moment)))
        moment += 1
    assert actions[-1][2] == "quarantine"
    assert ("gpu-a001", "failed", "quarantine") in actions


def test_silence_holds_back_the_alert_until_it_expires(monitor: HealthMonitor) -> None:
    """A silenced node's alert is recorded unannounced, and announced when the silence ends while it is still open."""
    monitor.add_silence(Silence("sil-1", "gpu-a001", None, ends_at=T0 + 10))
    monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=97)), T0)
    opened = monitor.evaluate(T0)
    assert _verdicts(opened) == [("gpu-a001", "failed", "drain")]
    assert _alerts(opened) == [("opened", "gpu-a001", "thermal_critical", False)]
    for second in range(1, 10):
        monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=97)), T0 + second)
        assert not monitor.evaluate(T0 + second)
    monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=97)), T0 + 10)
    assert _alerts(monitor.evaluate(T0 + 10)) == [
        ("announced", "gpu-a001", "thermal_critical", True)
    ]


def test_alert_resolved_while_silenced_is_never_announced(monitor: HealthMonitor) -> None:
    """An alert that opens and resolves inside a silence is recorded and resolved without any announcement."""
    monitor.add_silence(Silence("sil-1", "gpu-a001", "thermal_hot", ends_at=T0 + 100))
    monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=87)), T0)
    monitor.evaluate(T0)
    monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=60)), T0 + 1)
    monitor.evaluate(T0 + 1)
    monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=60)), T0 + 6)
    assert _alerts(monitor.evaluate(T0 + 6)) == [("resolved", "gpu-a001", "thermal_hot", False)]


def test_lifted_silence_announces_the_held_alert(monitor: HealthMonitor) -> None:
    """Lifting a silence early announces its held-back open alert on the next evaluation."""
    monitor.add_silence(Silence("sil-1", "gpu-a001", None, ends_at=T0 + 3600))
    monitor.observe_telemetry(telemetry(samples=gpus(ecc_dbe_volatile=1)), T0)
    monitor.evaluate(T0)
    monitor.lift_silence("sil-1")
    monitor.observe_telemetry(telemetry(samples=gpus(ecc_dbe_volatile=1)), T0 + 1)
    assert _alerts(monitor.evaluate(T0 + 1)) == [("announced", "gpu-a001", "ecc_dbe", True)]


def test_flickering_condition_keeps_one_alert_and_counts_occurrences(
    monitor: HealthMonitor,
) -> None:
    """A condition that comes back within the dwell reuses the open alert and bumps its occurrences."""
    monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=87)), T0)
    alert_id = monitor.evaluate(T0).alerts[0].alert.alert_id
    monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=70)), T0 + 1)
    monitor.evaluate(T0 + 1)
    monitor.observe_telemetry(telemetry(samples=gpus(temperature_c=87)), T0 + 2)
    assert not monitor.evaluate(T0 + 2).alerts
    alert = monitor.nodes["gpu-a001"].alerts["thermal_hot"]
    assert (alert.alert_id, alert.occurrences) == (alert_id, 2)


def test_unknown_and_retired_nodes_are_not_judged(monitor: HealthMonitor) -> None:
    """Telemetry from an unexpected node is refused; a retired (removed) node is never judged again."""
    add_second_node(monitor)
    assert monitor.observe_telemetry(telemetry("gpu-zzz"), T0) is False
    heartbeat = NodeHeartbeat(
        node_id="gpu-zzz",
        session="s",
        seq=1,
        sent_at=timestamp(T0),
        interval_ms=1000,
        source="nvml",
    )
    assert monitor.observe_heartbeat(heartbeat, T0) is False
    monitor.remove_node("gpu-a001")
    monitor.observe_telemetry(telemetry("gpu-a002"), T0 + 50)
    assert not monitor.evaluate(T0 + 50)


def test_heartbeat_keeps_a_node_reachable(monitor: HealthMonitor) -> None:
    """Heartbeats alone (no telemetry) keep a node reachable."""
    add_second_node(monitor)
    for second in range(10):
        for node_id in ("gpu-a001", "gpu-a002"):
            beat = NodeHeartbeat(
                node_id=node_id,
                session="s",
                seq=second,
                sent_at=timestamp(T0),
                interval_ms=1000,
                source="nvml",
            )
            assert monitor.observe_heartbeat(beat, T0 + second)
        assert not monitor.evaluate(T0 + second + 0.5)
