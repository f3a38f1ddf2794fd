"""The health monitor: every expected node's state, fed by telemetry, judged on a tick.

``HealthMonitor`` is pure (no I/O, time passed in): inventory events tell it which
nodes to expect (``upsert_node`` / ``remove_node``), the ingest feeds it telemetry
and heartbeats (``observe_telemetry`` / ``observe_heartbeat``; a message from a node
it does not expect returns ``False``), and ``evaluate(now)`` returns what changed:
verdicts to publish and alerts opened, announced or resolved. Only nodes whose
state can have changed are evaluated (new conditions, a running dwell, a pending
alert, a heartbeat deadline passed), which keeps a tick cheap at 10,000 nodes.

After a restart the monitor is loaded with the published verdicts, open alerts and
silences; a node is not judged before it has reported once or the grace of
``missed_intervals`` of its last known interval has passed (counted from the
restart, or from when the node was registered or left maintenance), so a restart
raises no false alarm for live nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aifactory.contracts.health.v1 import NodeHeartbeat, NodeTelemetry
from aifactory.health.alerts import AlertChange, OpenAlert, Silence, Silences, severity_of
from aifactory.health.domain import Decision, NodeHealth, NodeInfo
from aifactory.health.rules import Condition, RuleSettings, assess


@dataclass(frozen=True, slots=True)
class VerdictChange:
    """A node's verdict to publish."""

    node: NodeInfo
    decision: Decision


@dataclass(slots=True)
class Changes:
    """What one evaluation changed."""

    verdicts: list[VerdictChange] = field(default_factory=list)
    alerts: list[AlertChange] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.verdicts or self.alerts)

    def extend(self, other: Changes) -> None:
        """Append ``other``'s changes after these."""
        self.verdicts.extend(other.verdicts)
        self.alerts.extend(other.alerts)


class HealthMonitor:
    """All expected nodes and the rules that judge them."""

    def __init__(self, rules: RuleSettings, *, started: float) -> None:
        self.rules = rules
        self.started = started
        self.nodes: dict[str, NodeHealth] = {}
        self.silences = Silences()

    # ------------------------------------------------------------ expectation
    def upsert_node(
        self, info: NodeInfo, *, now: float, interval_s: float | None = None
    ) -> NodeHealth:
        """Expect ``info.node_id`` (or update what inventory says about it)."""
        node = self.nodes.get(info.node_id)
        if node is None:
            node = NodeHealth(
                info=info,
                interval_s=interval_s or self.rules.default_interval_s,
                expected_since=max(now, self.started),
            )
            self.nodes[info.node_id] = node
            return node
        was_monitored = node.monitored
        node.info = info
        if node.monitored and not was_monitored:
            node.expected_since = now
            node.lost = False
        node.dirty = True
        return node

    def remove_node(self, node_id: str) -> None:
        """Stop expecting ``node_id`` (retired)."""
        self.nodes.pop(node_id, None)

    # ------------------------------------------------------------ telemetry
    def _seen(self, node: NodeHealth, session: str, interval_ms: int, now: float) -> None:
        if node.lost or node.last_seen is None:
            node.dirty = True
        node.last_seen = now
        node.interval_s = interval_ms / 1000.0
        if session != node.session:
            node.session = session
            node.dirty = True

    def observe_telemetry(self, telemetry: NodeTelemetry, now: float) -> bool:
        """Apply one telemetry sample; ``False`` when the node is not expected."""
        node = self.nodes.get(telemetry.node_id)
        if node is None:
            return False
        self._seen(node, telemetry.session, telemetry.interval_ms, now)
        conditions = assess(
            telemetry,
            node.memory,
            expected_accelerators=node.info.accelerators,
            now=now,
            rules=self.rules,
        )
        if conditions != node.conditions:
            node.conditions = conditions
            node.dirty = True
        return True

    def observe_heartbeat(self, heartbeat: NodeHeartbeat, now: float) -> bool:
        """Apply one heartbeat (liveness only); ``False`` when the node is not expected."""
        node = self.nodes.get(heartbeat.node_id)
        if node is None:
            return False
        if heartbeat.session != node.session:
            node.conditions = {}
        self._seen(node, heartbeat.session, heartbeat.interval_ms, now)
        return True

    def unsaved_intervals(self) -> dict[str, float]:
        """Nodes whose reporting interval changed since last saved (marked saved)."""
        changed: dict[str, float] = {}
        for node_id, node in self.nodes.items():
            if node.last_seen is not None and node.interval_saved != node.interval_s:
                node.interval_saved = node.interval_s
                changed[node_id] = node.interval_s
        return changed

    # ------------------------------------------------------------ silences
    def add_silence(self, silence: Silence) -> None:
        """Honour ``silence`` from now on."""
        self.silences.add(silence)

    def lift_silence(self, silence_id: str) -> None:
        """Stop honouring a silence (its held-back alerts are announced on the next tick)."""
        self.silences.lift(silence_id)
        for node in self.nodes.values():
            if any(not a.announced for a in node.alerts.values()):
                node.dirty = True

    # ------------------------------------------------------------ judging
    def evaluate(self, now: float) -> Changes:
        """Judge every node that may have changed; return what to persist and publish."""
        self.silences.prune(now)
        changes = Changes()
        rules = self.rules
        for node in self.nodes.values():
            if not node.needs_evaluation(now, rules):
                continue
            if node.last_seen is None and node.monitored and now < node.deadline(rules):
                continue  # not heard from yet, still within its grace: judge nothing
            node.dirty = False
            active = node.conditions_now(now, rules)
            decision = node.decide(active, now, rules)
            if decision is not None:
                changes.verdicts.append(VerdictChange(node.info, decision))
            self._update_alerts(node, active, now, changes)
        return changes

    def _update_alerts(
        self, node: NodeHealth, active: dict[str, Condition], now: float, changes: Changes
    ) -> None:
        node_id = node.info.node_id
        where = {"site_id": node.info.site_id, "rack_id": node.info.rack_id}
        for code, condition in active.items():
            alert = node.alerts.get(code)
            if alert is not None:
                if alert.absent_since is not None:
                    alert.absent_since = None
                    alert.occurrences += 1
                alert.summary = condition.message
                alert.component = condition.component
                if not alert.announced and not self.silences.covers(node_id, code, now):
                    alert.announced = True
                    changes.alerts.append(
                        AlertChange("announced", node_id, alert, announce=True, at=now, **where)
                    )
                continue
            silenced = self.silences.covers(node_id, code, now)
            alert = OpenAlert(
                rule=code,
                severity=severity_of(condition.verdict),
                summary=condition.message,
                component=condition.component,
                first_seen=node.first_seen.get(code, now),
                raised_at=now,
                announced=not silenced,
            )
            node.alerts[code] = alert
            changes.alerts.append(
                AlertChange("opened", node_id, alert, announce=not silenced, at=now, **where)
            )
        for code in [c for c in node.alerts if c not in active]:
            alert = node.alerts[code]
            if alert.absent_since is None:
                alert.absent_since = now
            if now - alert.absent_since >= self.rules.recovery_dwell_s:
                del node.alerts[code]
                changes.alerts.append(
                    AlertChange(
                        "resolved", node_id, alert, announce=alert.announced, at=now, **where
                    )
                )
