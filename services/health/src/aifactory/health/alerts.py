"""Alerts and silences, as pure state (no I/O).

One alert per (node, rule): while a rule's condition holds on a node its alert stays
open and repeats only bump ``occurrences`` (deduplication). A condition that goes
away resolves the alert after the same minimum dwell as verdicts, so a flickering
condition does not open and close alerts. An alert covered by a silence (the node,
or the node and that rule, until the silence's end) is recorded but not announced;
if it is still open when the silence ends, it is announced then. Severity follows
the condition: failed and unreachable are critical, degraded is a warning.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from aifactory.contracts.health.v1 import AlertSeverity, Verdict

AlertChangeKind = Literal["opened", "announced", "resolved"]


def severity_of(verdict: Verdict) -> AlertSeverity:
    """``critical`` for failed and unreachable, ``warning`` otherwise."""
    return "critical" if verdict in ("failed", "unreachable") else "warning"


@dataclass(slots=True)
class OpenAlert:
    """An open alert of one node (its rule is the key)."""

    rule: str
    severity: AlertSeverity
    summary: str
    component: str
    first_seen: float
    raised_at: float
    alert_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    announced: bool = False
    occurrences: int = 1
    absent_since: float | None = None

    @property
    def pending(self) -> bool:
        """Whether time alone can change this alert (resolution or a silence's end)."""
        return self.absent_since is not None or not self.announced


@dataclass(frozen=True, slots=True)
class AlertChange:
    """Something that happened to an alert, to persist (and announce when ``announce``)."""

    kind: AlertChangeKind
    node_id: str
    alert: OpenAlert
    announce: bool
    at: float
    site_id: str = ""
    rack_id: str = ""


@dataclass(frozen=True, slots=True)
class Silence:
    """Alerts of ``node_id`` (one ``rule`` or all) are not announced before ``ends_at``."""

    silence_id: str
    node_id: str
    rule: str | None
    ends_at: float

    def covers(self, node_id: str, rule: str, now: float) -> bool:
        """Whether this silence holds back ``rule`` on ``node_id`` at ``now``."""
        return (
            self.node_id == node_id
            and (self.rule is None or self.rule == rule)
            and now < self.ends_at
        )


@dataclass(slots=True)
class Silences:
    """The active silences, by node."""

    by_node: dict[str, list[Silence]] = field(default_factory=dict)

    def add(self, silence: Silence) -> None:
        """Start honouring ``silence``."""
        self.by_node.setdefault(silence.node_id, []).append(silence)

    def lift(self, silence_id: str) -> None:
        """Stop honouring the silence ``silence_id`` (no-op when unknown)."""
        for node_id, silences in list(self.by_node.items()):
            kept = [s for s in silences if s.silence_id != silence_id]
            if kept:
                self.by_node[node_id] = kept
            else:
                del self.by_node[node_id]

    def covers(self, node_id: str, rule: str, now: float) -> bool:
        """Whether any active silence holds back ``rule`` on ``node_id``."""
        silences = self.by_node.get(node_id)
        return bool(silences) and any(s.covers(node_id, rule, now) for s in silences or ())

    def prune(self, now: float) -> None:
        """Forget silences that have ended."""
        for node_id, silences in list(self.by_node.items()):
            kept = [s for s in silences if s.ends_at > now]
            if kept:
                self.by_node[node_id] = kept
            else:
                del self.by_node[node_id]
