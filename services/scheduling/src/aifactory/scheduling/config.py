"""The scheduling service's settings, read once from the environment at start-up.

- bus and database: as every service (``AIFACTORY_NATS_URL``, ``AIFACTORY_SUBJECT_PREFIX``,
  ``AIFACTORY_SCHEDULING_DATABASE_URL``, ... see docs/bus-kit.md);
- ``AIFACTORY_SCHEDULING_METRICS_PORT``: port of ``/metrics`` (default 0: off);
- ``AIFACTORY_SCHEDULING_MAX_REQUEUES``: requeues after node losses before a job is
  abandoned (default 3);
- ``AIFACTORY_SCHEDULING_KEY_CUSTODY``: ``nats`` (ask the keys service, the default) or
  ``off`` (every dataset key usable everywhere: a factory without the keys service);
- ``AIFACTORY_SCHEDULING_KEY_PRINCIPAL``: the principal the scheduler asks the keys
  service as (default ``service:scheduling``; key policies list it in allowed callers);
- ``AIFACTORY_SCHEDULING_KEY_CACHE_S``: how long a key's policy is remembered (default 60);
- ``AIFACTORY_SCHEDULING_KEY_RECHECK_S``: how often jobs waiting for the key service
  are retried (default 5).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from aifactory.bus.settings import BusSettings, SettingsError
from aifactory.store.settings import StoreSettings

SERVICE = "scheduling"


def _number(env: Mapping[str, str], name: str, default: float, *, maximum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not 0 <= value <= maximum:
        raise SettingsError(f"{name} must be between 0 and {maximum}, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class SchedulingSettings:
    """Everything the scheduling service is configured with."""

    bus: BusSettings
    database_url: str
    metrics_port: int = 0
    max_requeues: int = 3
    key_custody: Literal["nats", "off"] = "nats"
    key_principal: str = "service:scheduling"
    key_cache_s: float = 60.0
    key_recheck_s: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SchedulingSettings:
        """Settings from the environment (see module docstring)."""
        env = os.environ if env is None else env
        custody = env.get("AIFACTORY_SCHEDULING_KEY_CUSTODY", "nats").strip().lower() or "nats"
        if custody not in ("nats", "off"):
            raise SettingsError(
                f"AIFACTORY_SCHEDULING_KEY_CUSTODY must be nats or off, got {custody!r}"
            )
        principal = env.get("AIFACTORY_SCHEDULING_KEY_PRINCIPAL", "service:scheduling").strip()
        if not principal.startswith(("service:", "operator:")):
            raise SettingsError(
                "AIFACTORY_SCHEDULING_KEY_PRINCIPAL must be service:<name> or "
                f"operator:<name>, got {principal!r}"
            )
        return cls(
            bus=BusSettings.from_env(env),
            database_url=StoreSettings.from_env(SERVICE, env).url,
            metrics_port=int(_number(env, "AIFACTORY_SCHEDULING_METRICS_PORT", 0, maximum=65535)),
            max_requeues=int(_number(env, "AIFACTORY_SCHEDULING_MAX_REQUEUES", 3, maximum=1000)),
            key_custody="off" if custody == "off" else "nats",
            key_principal=principal,
            key_cache_s=_number(env, "AIFACTORY_SCHEDULING_KEY_CACHE_S", 60.0, maximum=86400),
            key_recheck_s=_number(env, "AIFACTORY_SCHEDULING_KEY_RECHECK_S", 5.0, maximum=3600),
        )
