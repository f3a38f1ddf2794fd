"""The inventory service's settings, read once from the environment at start-up.

- bus and database: as every service (``AIFACTORY_NATS_URL``, ``AIFACTORY_SUBJECT_PREFIX``,
  ``AIFACTORY_INVENTORY_DATABASE_URL``, ... see docs/bus-kit.md);
- ``AIFACTORY_INVENTORY_METRICS_PORT``: port of ``/metrics`` (default 0: off);
- ``AIFACTORY_INVENTORY_AUTO_RETURN``: ``true`` lets a healthy verdict return a node
  that a health verdict marked failed (default ``false``: an operator returns it);
- ``AIFACTORY_INVENTORY_UNREACHABLE_FAILS``: ``false`` keeps nodes whose verdict is
  ``unreachable`` in their state (default ``true``: they are marked failed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from aifactory.bus.settings import BusSettings, SettingsError
from aifactory.inventory.handlers import HealthPolicy
from aifactory.store.settings import StoreSettings

SERVICE = "inventory"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class InventorySettings:
    """Everything the inventory service is configured with."""

    bus: BusSettings
    database_url: str
    metrics_port: int = 0
    policy: HealthPolicy = field(default_factory=HealthPolicy)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InventorySettings:
        """Settings from the environment (see module docstring)."""
        env = os.environ if env is None else env
        raw_port = env.get("AIFACTORY_INVENTORY_METRICS_PORT", "0") or "0"
        if not raw_port.isdigit() or int(raw_port) > 65535:
            raise SettingsError(
                f"AIFACTORY_INVENTORY_METRICS_PORT must be a port, got {raw_port!r}"
            )
        return cls(
            bus=BusSettings.from_env(env),
            database_url=StoreSettings.from_env(SERVICE, env).url,
            metrics_port=int(raw_port),
            policy=HealthPolicy(
                auto_return=_flag(env, "AIFACTORY_INVENTORY_AUTO_RETURN", default=False),
                unreachable_fails=_flag(env, "AIFACTORY_INVENTORY_UNREACHABLE_FAILS", default=True),
            ),
        )
