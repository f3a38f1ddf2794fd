"""The health rules: what one telemetry sample says about a node (pure, no I/O).

``assess`` turns a ``NodeTelemetry`` into the node's current *conditions*, keyed by
rule code, each with the verdict it implies and the recommended action:

| code | verdict | action | when |
|---|---|---|---|
| ``xid_<n>`` | per the Xid table | per the table | a fatal Xid this session, another recently |
| ``ecc_dbe`` | failed | reset | a volatile double-bit ECC count above 0 |
| ``row_remap_failure`` | failed | replace | the GPU ran out of spare rows |
| ``row_remap_pending`` | degraded | reset | a row remap waits for a GPU reset |
| ``retired_pages_limit`` | failed | replace | retired pages (DBE) at or above the limit |
| ``thermal_critical`` | failed | drain | at or above the critical temperature (hysteresis) |
| ``thermal_hot`` | degraded | none | at or above the hot temperature (hysteresis) |
| ``nvlink_errors`` | degraded | drain | NVLink error counters rose by the threshold in one sample |
| ``gpu_missing`` | failed | reset | fewer accelerators visible than inventory lists |

Thermal rules have hysteresis: a GPU enters *hot* at ``thermal_hot_c`` and leaves it
only below ``thermal_hot_c - thermal_hysteresis_c`` (likewise for *critical*), so a
temperature hovering at a threshold does not flap. Liveness (``heartbeat_lost``) and
the history rules (``flapping``, ``repeated_failures``) are judged by the monitor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aifactory.contracts.health.v1 import NodeTelemetry, RecommendedAction, Verdict
from aifactory.health.xids import xid_rule

HOT = 1
CRITICAL = 2
MAX_COMPONENT_CHARS = 256


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """Thresholds and windows of the health rules (see docs/health.md)."""

    missed_intervals: int = 3
    """A node is unreachable after this many reporting intervals without a message."""
    default_interval_s: float = 1.0
    """Reporting interval assumed for a node that has not reported one yet."""
    thermal_hot_c: int = 85
    thermal_critical_c: int = 95
    thermal_hysteresis_c: int = 5
    xid_window_s: float = 600.0
    """How long a non-fatal Xid counts (fatal ones count for the whole agent session)."""
    nvlink_error_threshold: int = 100
    nvlink_window_s: float = 300.0
    retired_pages_limit: int = 64
    recovery_dwell_s: float = 30.0
    """A better verdict (and an alert's resolution) must hold this long before it is published."""
    flap_threshold: int = 4
    """Worsenings within ``flap_window_s`` that make a node *flapping*."""
    flap_window_s: float = 600.0
    failure_threshold: int = 3
    """Entries into failed/unreachable within ``failure_window_s`` that recommend quarantine."""
    failure_window_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.missed_intervals < 1:
            raise ValueError("missed_intervals must be at least 1")
        if not self.thermal_hot_c < self.thermal_critical_c:
            raise ValueError("thermal_hot_c must be below thermal_critical_c")
        if self.thermal_hysteresis_c < 0 or self.recovery_dwell_s < 0:
            raise ValueError("hysteresis and dwell cannot be negative")
        if self.flap_threshold < 2 or self.failure_threshold < 2:
            raise ValueError("flap_threshold and failure_threshold must be at least 2")


@dataclass(frozen=True, slots=True)
class Condition:
    """One thing wrong with a node now: the verdict and action it implies."""

    code: str
    verdict: Verdict
    action: RecommendedAction
    message: str
    component: str = "node"


@dataclass(slots=True)
class SampleMemory:
    """What the rules remember between samples of one node (per agent session)."""

    session: str = ""
    thermal: dict[int, int] = field(default_factory=dict)
    nvlink_last: dict[int, int] = field(default_factory=dict)
    nvlink_alarm_until: dict[int, float] = field(default_factory=dict)

    def start(self, session: str) -> None:
        """A new agent session: forget everything of the previous one."""
        self.session = session
        self.thermal.clear()
        self.nvlink_last.clear()
        self.nvlink_alarm_until.clear()


def thermal_level(level: int, temperature: int, rules: RuleSettings) -> int:
    """The GPU's thermal level after reading ``temperature`` (with hysteresis)."""
    if temperature >= rules.thermal_critical_c:
        return CRITICAL
    if level == CRITICAL and temperature > rules.thermal_critical_c - rules.thermal_hysteresis_c:
        return CRITICAL
    if temperature >= rules.thermal_hot_c:
        return HOT
    if level >= HOT and temperature > rules.thermal_hot_c - rules.thermal_hysteresis_c:
        return HOT
    return 0


def _gpus(indices: list[int]) -> str:
    return ",".join(f"gpu:{i}" for i in sorted(set(indices)))[:MAX_COMPONENT_CHARS]


@dataclass(slots=True)
class _GpuFindings:
    """GPU indices per per-GPU rule, gathered in one pass over a sample."""

    critical: list[int] = field(default_factory=list)
    hot: list[int] = field(default_factory=list)
    dbe: list[int] = field(default_factory=list)
    remap_failed: list[int] = field(default_factory=list)
    remap_pending: list[int] = field(default_factory=list)
    retired: list[int] = field(default_factory=list)


def _scan(
    telemetry: NodeTelemetry, memory: SampleMemory, now: float, rules: RuleSettings
) -> _GpuFindings | None:
    """One pass over the GPUs; ``None`` when nothing is wrong (the common, cheap case)."""
    found: _GpuFindings | None = None
    levels = memory.thermal  # only GPUs above normal are in it
    hot_c = rules.thermal_hot_c
    retired_limit = rules.retired_pages_limit
    nvlink_last = memory.nvlink_last
    for gpu in telemetry.gpus:
        index = gpu.index
        temperature = gpu.temperature_c
        if temperature is not None and (temperature >= hot_c or index in levels):
            level = thermal_level(levels.get(index, 0), temperature, rules)
            if level:
                levels[index] = level
                found = found or _GpuFindings()
                (found.critical if level == CRITICAL else found.hot).append(index)
            else:
                levels.pop(index, None)
        retired = gpu.retired_pages_dbe
        if (
            gpu.ecc_dbe_volatile
            or gpu.remap_failure
            or gpu.remap_pending
            or (retired is not None and retired >= retired_limit)
        ):
            found = found or _GpuFindings()
            if gpu.ecc_dbe_volatile:
                found.dbe.append(index)
            if gpu.remap_failure:
                found.remap_failed.append(index)
            elif gpu.remap_pending:
                found.remap_pending.append(index)
            if retired is not None and retired >= retired_limit:
                found.retired.append(index)
        errors = gpu.nvlink_errors
        if errors is not None:
            last = nvlink_last.get(index)
            if last != errors:
                nvlink_last[index] = errors
                if last is not None and errors - last >= rules.nvlink_error_threshold:
                    memory.nvlink_alarm_until[index] = now + rules.nvlink_window_s
    return found


def _gpu_conditions(found: _GpuFindings | None, rules: RuleSettings) -> dict[str, Condition]:
    if found is None:
        return {}  # the common case, kept cheap: this runs for every sample
    table: tuple[tuple[str, Verdict, RecommendedAction, str, list[int]], ...] = (
        (
            "thermal_critical",
            "failed",
            "drain",
            f"GPU at or above {rules.thermal_critical_c} °C",
            found.critical,
        ),
        ("thermal_hot", "degraded", "none", f"GPU at or above {rules.thermal_hot_c} °C", found.hot),
        ("ecc_dbe", "failed", "reset", "uncorrectable (double-bit) ECC errors", found.dbe),
        (
            "row_remap_failure",
            "failed",
            "replace",
            "row remapping failed: no spare rows left",
            found.remap_failed,
        ),
        (
            "row_remap_pending",
            "degraded",
            "reset",
            "row remapping pending: reset the GPU",
            found.remap_pending,
        ),
        (
            "retired_pages_limit",
            "failed",
            "replace",
            f"{rules.retired_pages_limit} or more pages retired for double-bit errors",
            found.retired,
        ),
    )
    return {
        code: Condition(code, verdict, action, message, _gpus(gpus))
        for code, verdict, action, message, gpus in table
        if gpus
    }


def assess(
    telemetry: NodeTelemetry,
    memory: SampleMemory,
    *,
    expected_accelerators: int | None,
    now: float,
    rules: RuleSettings,
) -> dict[str, Condition]:
    """The node's conditions according to this sample (empty: nothing wrong)."""
    if telemetry.session != memory.session:
        memory.start(telemetry.session)
    found = _gpu_conditions(_scan(telemetry, memory, now, rules), rules)
    if memory.nvlink_alarm_until:
        alarming = [i for i, until in memory.nvlink_alarm_until.items() if until > now]
        if alarming:
            found["nvlink_errors"] = Condition(
                "nvlink_errors",
                "degraded",
                "drain",
                f"NVLink errors rose by {rules.nvlink_error_threshold}+ in one sample",
                _gpus(alarming),
            )
        else:
            memory.nvlink_alarm_until.clear()
    if telemetry.xids:
        _assess_xids(telemetry, found, now, rules)
    if expected_accelerators is not None and len(telemetry.gpus) < expected_accelerators:
        found["gpu_missing"] = Condition(
            "gpu_missing",
            "failed",
            "reset",
            f"{len(telemetry.gpus)} of {expected_accelerators} accelerators visible",
        )
    return found


def _assess_xids(
    telemetry: NodeTelemetry, found: dict[str, Condition], now: float, rules: RuleSettings
) -> None:
    by_code: dict[int, list[int]] = {}
    for event in telemetry.xids:
        rule = xid_rule(event.xid)
        if rule is None:
            continue
        if rule.fatal or now - event.at.timestamp() < rules.xid_window_s:
            by_code.setdefault(event.xid, []).append(event.gpu)
    for xid, gpus in by_code.items():
        rule = xid_rule(xid)
        assert rule is not None
        code = f"xid_{xid}"
        found[code] = Condition(
            code, rule.verdict, rule.action, f"{rule.title} (Xid {xid})", _gpus(gpus)
        )
