"""One node's health: conditions in, one verdict out, published only when it changes.

``NodeHealth`` holds what the monitor knows about a node: its inventory facts, when
it last reported, the conditions of its latest sample, the verdict last published,
and its open alerts. ``decide`` is the verdict rule:

- the target verdict is the worst of the node's conditions (failed > unreachable >
  degraded > healthy), the recommended action the strongest (quarantine > replace >
  reset > drain > none);
- a worse verdict, or a stronger action, is published at once (SREs must know within
  seconds);
- a better one is published only after it has held for ``recovery_dwell_s``
  (minimum dwell: a node hovering around a threshold does not flap);
- nothing else is published: an unchanged verdict emits nothing.

The history rules live here too: each worsening of the raw verdict is remembered;
``flap_threshold`` worsenings within ``flap_window_s`` make the node *flapping*, and
``failure_threshold`` entries into failed/unreachable within ``failure_window_s``
*repeated failures*; both hold the verdict at degraded or worse and recommend
``quarantine``.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from aifactory.contracts.health.v1 import HealthReason, RecommendedAction, Verdict
from aifactory.health.alerts import OpenAlert
from aifactory.health.rules import Condition, RuleSettings, SampleMemory

VERDICT_RANK: dict[Verdict, int] = {"healthy": 0, "degraded": 1, "unreachable": 2, "failed": 3}
ACTION_RANK: dict[RecommendedAction, int] = {
    "none": 0,
    "drain": 1,
    "reset": 2,
    "replace": 3,
    "quarantine": 4,
}
UNMONITORED_STATES = frozenset({"provisioning", "maintenance", "retired"})
"""Admin states in which a node is not expected to heartbeat."""
MAX_REASONS = 64


def timestamp(seconds: float) -> dt.datetime:
    """A UTC datetime from epoch seconds."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


@dataclass(slots=True)
class NodeInfo:
    """What inventory says about a node."""

    node_id: str
    site_id: str
    rack_id: str = ""
    accelerators: int | None = None
    admin_state: str = "available"


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict to publish."""

    verdict: Verdict
    previous: Verdict
    action: RecommendedAction
    reasons: tuple[HealthReason, ...]
    first_seen: float
    observed_at: float


@dataclass(slots=True)
class NodeHealth:
    """The monitor's state of one node."""

    info: NodeInfo
    interval_s: float
    expected_since: float
    """Since when the node is expected to report (registered, monitored again, or restart)."""
    last_seen: float | None = None
    session: str = ""
    memory: SampleMemory = field(default_factory=SampleMemory)
    conditions: dict[str, Condition] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)
    verdict: Verdict = "healthy"
    action: RecommendedAction = "none"
    reasons: tuple[HealthReason, ...] = ()
    verdict_first_seen: float | None = None
    observed_at: float | None = None
    better_since: float | None = None
    last_raw: Verdict = "healthy"
    worsened: deque[float] = field(default_factory=deque)
    failures: deque[float] = field(default_factory=deque)
    alerts: dict[str, OpenAlert] = field(default_factory=dict)
    dirty: bool = False
    lost: bool = False
    interval_saved: float | None = None
    """The interval last written to the database."""

    @property
    def monitored(self) -> bool:
        """Whether the node is expected to heartbeat (not provisioning, in maintenance, retired)."""
        return self.info.admin_state not in UNMONITORED_STATES

    def deadline(self, rules: RuleSettings) -> float:
        """When the node counts as unreachable if nothing more arrives."""
        since = self.last_seen if self.last_seen is not None else self.expected_since
        return since + rules.missed_intervals * self.interval_s

    def needs_evaluation(self, now: float, rules: RuleSettings) -> bool:
        """Whether evaluating now could change anything."""
        if self.dirty or self.better_since is not None or self.worsened:
            return True
        if any(alert.pending for alert in self.alerts.values()):
            return True
        return self.monitored and not self.lost and now >= self.deadline(rules)

    def conditions_now(self, now: float, rules: RuleSettings) -> dict[str, Condition]:
        """The sample's conditions plus liveness and history conditions."""
        active = dict(self.conditions)
        self.lost = self.monitored and now >= self.deadline(rules)
        if self.lost:
            active["heartbeat_lost"] = Condition(
                "heartbeat_lost",
                "unreachable",
                "reset",
                f"no heartbeat for {rules.missed_intervals} intervals "
                f"({rules.missed_intervals * self.interval_s:g}s)"
                + ("" if self.last_seen is not None else "; never heard from"),
            )
        raw = worst(active.values())
        if VERDICT_RANK[raw] > VERDICT_RANK[self.last_raw]:
            self.worsened.append(now)
            if raw in ("failed", "unreachable"):
                self.failures.append(now)
        self.last_raw = raw
        while self.worsened and now - self.worsened[0] > rules.flap_window_s:
            self.worsened.popleft()
        while self.failures and now - self.failures[0] > rules.failure_window_s:
            self.failures.popleft()
        if len(self.worsened) >= rules.flap_threshold:
            active["flapping"] = Condition(
                "flapping",
                "degraded",
                "quarantine",
                f"verdict worsened {len(self.worsened)} times in {rules.flap_window_s:g}s",
            )
        if len(self.failures) >= rules.failure_threshold:
            active["repeated_failures"] = Condition(
                "repeated_failures",
                "degraded",
                "quarantine",
                f"failed {len(self.failures)} times in {rules.failure_window_s:g}s",
            )
        for code in active:
            self.first_seen.setdefault(code, now)
        for code in [c for c in self.first_seen if c not in active]:
            del self.first_seen[code]
        return active

    def decide(
        self, active: dict[str, Condition], now: float, rules: RuleSettings
    ) -> Decision | None:
        """The verdict to publish now, if any (see module docstring)."""
        target = worst(active.values())
        action = strongest(active.values())
        reasons = tuple(
            HealthReason(code=c.code, message=c.message[:512], component=c.component[:64])
            for c in sorted(active.values(), key=lambda c: (-VERDICT_RANK[c.verdict], c.code))
        )[:MAX_REASONS]
        if target == self.verdict and action == self.action:
            self.better_since = None
            self.reasons = reasons
            return None
        worse = VERDICT_RANK[target] > VERDICT_RANK[self.verdict] or (
            target == self.verdict and ACTION_RANK[action] > ACTION_RANK[self.action]
        )
        if not worse:
            if self.better_since is None:
                self.better_since = now
            if now - self.better_since < rules.recovery_dwell_s:
                return None
        first = [self.first_seen[c.code] for c in active.values() if c.verdict == target]
        decision = Decision(
            verdict=target,
            previous=self.verdict,
            action=action,
            reasons=reasons,
            first_seen=min(first) if first else (self.better_since or now),
            observed_at=now,
        )
        self.verdict = target
        self.action = action
        self.reasons = reasons
        self.verdict_first_seen = decision.first_seen
        self.observed_at = now
        self.better_since = None
        return decision


def worst(conditions: Iterable[Condition]) -> Verdict:
    """The worst verdict among ``conditions`` (healthy when there are none)."""
    verdict: Verdict = "healthy"
    for condition in conditions:
        if VERDICT_RANK[condition.verdict] > VERDICT_RANK[verdict]:
            verdict = condition.verdict
    return verdict


def strongest(conditions: Iterable[Condition]) -> RecommendedAction:
    """The strongest recommended action among ``conditions``."""
    action: RecommendedAction = "none"
    for condition in conditions:
        if ACTION_RANK[condition.action] > ACTION_RANK[action]:
            action = condition.action
    return action
