"""The per-sample rules: thermal hysteresis, ECC, row remapping, NVLink, missing GPUs, Xids."""

from __future__ import annotations

import pytest

from aifactory.health.rules import CRITICAL, HOT, RuleSettings, SampleMemory, assess, thermal_level
from aifactory.health.xids import XID_TABLE, xid_rule

from ..conftest import T0, gpus, telemetry

RULES = RuleSettings()


def _assess(sample, memory=None, expected=8, now=T0):  # type: ignore[no-untyped-def]
    return assess(
        sample, memory or SampleMemory(), expected_accelerators=expected, now=now, rules=RULES
    )


def test_healthy_sample_has_no_conditions() -> None:
    """A sample with every GPU normal gives no condition."""
    assert _assess(telemetry()) == {}


def test_thermal_levels_have_hysteresis() -> None:
    """Hot starts at 85 °C and ends only below 80; critical starts at 95 and ends only below 90."""
    path = [84, 85, 82, 80, 79, 95, 91, 90, 89]
    level = 0
    seen = []
    for temperature in path:
        level = thermal_level(level, temperature, RULES)
        seen.append(level)
    assert seen == [0, HOT, HOT, 0, 0, CRITICAL, CRITICAL, HOT, HOT]


def test_thermal_conditions_name_the_hot_gpu() -> None:
    """A GPU at 96 °C is a critical thermal condition (failed, drain) naming that GPU."""
    found = _assess(telemetry(samples=gpus(temperature_c=96)))
    assert list(found) == ["thermal_critical"]
    condition = found["thermal_critical"]
    assert (condition.verdict, condition.action, condition.component) == (
        "failed",
        "drain",
        "gpu:7",
    )


@pytest.mark.parametrize(
    ("fault", "code", "verdict", "action"),
    [
        ({"ecc_dbe_volatile": 1}, "ecc_dbe", "failed", "reset"),
        ({"remap_failure": True}, "row_remap_failure", "failed", "replace"),
        ({"remap_pending": True}, "row_remap_pending", "degraded", "reset"),
        ({"retired_pages_dbe": 64}, "retired_pages_limit", "failed", "replace"),
        ({"temperature_c": 86}, "thermal_hot", "degraded", "none"),
    ],
)
def test_memory_and_thermal_faults(
    fault: dict[str, object], code: str, verdict: str, action: str
) -> None:
    """Each GPU fault gives its condition with the documented verdict and action."""
    found = _assess(telemetry(samples=gpus(**fault)))
    assert list(found) == [code]
    assert (found[code].verdict, found[code].action) == (verdict, action)


def test_missing_gpu_fails_the_node() -> None:
    """Seven GPUs visible on an eight-GPU node is a failed condition recommending a reset."""
    found = _assess(telemetry(samples=gpus(7)))
    assert found["gpu_missing"].verdict == "failed"
    assert "7 of 8" in found["gpu_missing"].message
    assert _assess(telemetry(samples=gpus(7)), expected=None) == {}


def test_nvlink_error_burst_is_degraded_for_a_window() -> None:
    """A jump of NVLink errors over the threshold is degraded until the window passes."""
    memory = SampleMemory()
    assert _assess(telemetry(samples=gpus(nvlink_errors=10)), memory) == {}
    burst = _assess(telemetry(samples=gpus(nvlink_errors=500)), memory, now=T0 + 1)
    assert burst["nvlink_errors"].action == "drain"
    still = _assess(telemetry(samples=gpus(nvlink_errors=500)), memory, now=T0 + 100)
    assert "nvlink_errors" in still
    assert _assess(telemetry(samples=gpus(nvlink_errors=500)), memory, now=T0 + 400) == {}


def test_fatal_xid_holds_for_the_session_and_others_for_a_window() -> None:
    """Xid 79 counts however old within the session; Xid 92 only within the Xid window; app Xids never."""
    old = T0 - 10 * RULES.xid_window_s
    found = _assess(telemetry(xids=[(3, 79, old), (2, 92, old), (1, 13, T0)]))
    assert list(found) == ["xid_79"]
    assert found["xid_79"].component == "gpu:3"
    recent = _assess(telemetry(xids=[(2, 92, T0 - 5)]))
    assert recent["xid_92"].verdict == "degraded"


def test_new_session_forgets_thermal_state() -> None:
    """A new agent session (reset or reboot) starts thermal hysteresis afresh."""
    memory = SampleMemory()
    _assess(telemetry(samples=gpus(temperature_c=96)), memory)
    assert "thermal_critical" in _assess(telemetry(samples=gpus(temperature_c=92)), memory)
    fresh = _assess(telemetry(samples=gpus(temperature_c=92), session="s2"), memory)
    assert list(fresh) == ["thermal_hot"]


@pytest.mark.parametrize("xid", [48, 64, 74, 79, 95, 119, 120])
def test_documented_fatal_xids_fail_the_node(xid: int) -> None:
    """The Xids the issue names as fatal are failed, held for the session, and recommend reset or replace."""
    rule = XID_TABLE[xid]
    assert (rule.verdict, rule.fatal) == ("failed", True)
    assert rule.action in ("reset", "replace")


def test_unknown_xid_is_degraded_and_application_xids_do_not_count() -> None:
    """An Xid outside the table is degraded with no action; 13, 31, 43, 45 are ignored."""
    unknown = xid_rule(9999)
    assert unknown is not None
    assert (unknown.verdict, unknown.action) == ("degraded", "none")
    assert all(xid_rule(x) is None for x in (13, 31, 43, 45))


def test_rule_settings_refuse_inconsistent_thresholds() -> None:
    """Thresholds that cannot work (hot above critical, zero intervals) are refused."""
    with pytest.raises(ValueError, match="thermal_hot_c"):
        RuleSettings(thermal_hot_c=100, thermal_critical_c=90)
    with pytest.raises(ValueError, match="missed_intervals"):
        RuleSettings(missed_intervals=0)
