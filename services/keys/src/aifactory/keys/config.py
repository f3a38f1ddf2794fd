"""The keys service's settings, read once from the environment at start-up.

- ``AIFACTORY_KEYS_MASTER_KEY`` (base64) or ``AIFACTORY_KEYS_MASTER_KEY_FILE``: the
  root of trust; default file ``<AIFACTORY_VAR_DIR>/keys/master.key`` (``aifactory
  keys init`` creates it, mode 0600). Without one the service refuses to start.
- ``AIFACTORY_KEYS_SITE``: the site this replica runs at (audited as the site of
  automatic rotations and destructions); default ``local``.
- ``AIFACTORY_KEYS_MIN_DESTRUCTION_WAIT_S``: the shortest waiting period a
  destruction may be scheduled with; default 86400 (one day).
- ``AIFACTORY_KEYS_MAINTENANCE_INTERVAL_S``: how often due rotations and
  destructions are applied; default 60.
- ``AIFACTORY_KEYS_MAX_BATCH``: requests committed together at most; default 256.
- ``AIFACTORY_KEYS_METRICS_PORT``: Prometheus ``/metrics`` port; default 0 (off).
- plus the bus and database settings of every service (docs/bus-kit.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aifactory.bus.settings import BusSettings, SettingsError
from aifactory.store.settings import StoreSettings

SERVICE = "keys"
_SITE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def default_master_key_file(env: Mapping[str, str]) -> Path:
    """Where ``aifactory keys init`` puts the master key unless told otherwise."""
    return Path(env.get("AIFACTORY_VAR_DIR", "var")) / "keys" / "master.key"


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class KeysSettings:
    """Everything the keys service reads from its environment, except the root of trust."""

    bus: BusSettings
    database_url: str
    master_key_file: Path
    site: str = "local"
    min_destruction_wait_s: int = 86400
    maintenance_interval_s: float = 60.0
    max_batch: int = 256
    metrics_port: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KeysSettings:
        """Settings from the environment (see module docstring)."""
        env = os.environ if env is None else env
        site = env.get("AIFACTORY_KEYS_SITE", "local").strip()
        if not _SITE.match(site):
            raise SettingsError(f"AIFACTORY_KEYS_SITE must match {_SITE.pattern}, got {site!r}")
        return cls(
            bus=BusSettings.from_env(env),
            database_url=StoreSettings.from_env(SERVICE, env).url,
            master_key_file=Path(
                env.get("AIFACTORY_KEYS_MASTER_KEY_FILE") or default_master_key_file(env)
            ),
            site=site,
            min_destruction_wait_s=_integer(env, "AIFACTORY_KEYS_MIN_DESTRUCTION_WAIT_S", 86400, 0),
            maintenance_interval_s=_seconds(env, "AIFACTORY_KEYS_MAINTENANCE_INTERVAL_S", 60.0),
            max_batch=_integer(env, "AIFACTORY_KEYS_MAX_BATCH", 256, 1),
            metrics_port=_integer(env, "AIFACTORY_KEYS_METRICS_PORT", 0, 0),
        )
