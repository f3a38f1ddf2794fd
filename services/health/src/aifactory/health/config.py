"""The health service's settings, read once from the environment at start-up.

- bus and database: as every service (``AIFACTORY_NATS_URL``, ``AIFACTORY_SUBJECT_PREFIX``,
  ``AIFACTORY_HEALTH_DATABASE_URL``, ... see docs/bus-kit.md);
- ``AIFACTORY_HEALTH_METRICS_PORT``: port of ``/metrics`` (default 0: off);
- ``AIFACTORY_HEALTH_TICK``: seconds between evaluations (default 0.25);
- the rules (defaults in brackets): ``AIFACTORY_HEALTH_MISSED_INTERVALS`` [3],
  ``AIFACTORY_HEALTH_DEFAULT_INTERVAL`` [1.0 s], ``AIFACTORY_HEALTH_RECOVERY_DWELL``
  [30 s], ``AIFACTORY_HEALTH_THERMAL_HOT`` [85 °C], ``AIFACTORY_HEALTH_THERMAL_CRITICAL``
  [95 °C], ``AIFACTORY_HEALTH_THERMAL_HYSTERESIS`` [5 °C], ``AIFACTORY_HEALTH_XID_WINDOW``
  [600 s], ``AIFACTORY_HEALTH_FLAP_THRESHOLD`` [4], ``AIFACTORY_HEALTH_FLAP_WINDOW``
  [600 s], ``AIFACTORY_HEALTH_FAILURE_THRESHOLD`` [3], ``AIFACTORY_HEALTH_FAILURE_WINDOW``
  [3600 s].
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from aifactory.bus.settings import BusSettings, SettingsError
from aifactory.health.rules import RuleSettings
from aifactory.store.settings import StoreSettings

SERVICE = "health"
_PREFIX = "AIFACTORY_HEALTH_"
_RULE_VARIABLES: dict[str, tuple[str, type]] = {
    "MISSED_INTERVALS": ("missed_intervals", int),
    "DEFAULT_INTERVAL": ("default_interval_s", float),
    "RECOVERY_DWELL": ("recovery_dwell_s", float),
    "THERMAL_HOT": ("thermal_hot_c", int),
    "THERMAL_CRITICAL": ("thermal_critical_c", int),
    "THERMAL_HYSTERESIS": ("thermal_hysteresis_c", int),
    "XID_WINDOW": ("xid_window_s", float),
    "FLAP_THRESHOLD": ("flap_threshold", int),
    "FLAP_WINDOW": ("flap_window_s", float),
    "FAILURE_THRESHOLD": ("failure_threshold", int),
    "FAILURE_WINDOW": ("failure_window_s", float),
}


def _number(env: Mapping[str, str], name: str, kind: type, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(kind(raw))
    except ValueError:
        raise SettingsError(
            f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}"
        ) from None
    if value < 0 or value > 10_000_000:
        raise SettingsError(f"{name} is out of range: {raw!r}")
    return value


def rules_from_env(env: Mapping[str, str]) -> RuleSettings:
    """The rule thresholds, defaults overridden by ``AIFACTORY_HEALTH_*``."""
    defaults = RuleSettings()
    values: dict[str, float | int] = {}
    for suffix, (attribute, kind) in _RULE_VARIABLES.items():
        default = getattr(defaults, attribute)
        value = _number(env, _PREFIX + suffix, kind, default)
        values[attribute] = int(value) if kind is int else value
    try:
        return RuleSettings(**values)  # type: ignore[arg-type]
    except ValueError as error:
        raise SettingsError(f"invalid health rule settings: {error}") from None


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """Everything the health service is configured with."""

    bus: BusSettings
    database_url: str
    metrics_port: int = 0
    tick_s: float = 0.25
    rules: RuleSettings = field(default_factory=RuleSettings)
    max_buffer: int = 50_000
    """Telemetry messages buffered between ticks before new ones are dropped (counted)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HealthSettings:
        """Settings from the environment (see module docstring)."""
        env = os.environ if env is None else env
        port = _number(env, _PREFIX + "METRICS_PORT", int, 0)
        if port > 65535:
            raise SettingsError(f"{_PREFIX}METRICS_PORT must be a port, got {port:g}")
        tick = _number(env, _PREFIX + "TICK", float, 0.25)
        if not 0.01 <= tick <= 10:
            raise SettingsError(f"{_PREFIX}TICK must be between 0.01 and 10 seconds")
        return cls(
            bus=BusSettings.from_env(env),
            database_url=StoreSettings.from_env(SERVICE, env).url,
            metrics_port=int(port),
            tick_s=tick,
            rules=rules_from_env(env),
        )
