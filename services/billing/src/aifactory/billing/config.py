"""The billing service's settings, read once from the environment at start-up.

- bus and database: as every service (``AIFACTORY_NATS_URL``, ``AIFACTORY_SUBJECT_PREFIX``,
  ``AIFACTORY_BILLING_DATABASE_URL`` (default SQLite ``<AIFACTORY_VAR_DIR>/billing.db``),
  ... see docs/bus-kit.md);
- ``AIFACTORY_BILLING_METRICS_PORT``: port of ``/metrics`` (default 0: off);
- ``AIFACTORY_BILLING_CREDIT_WINDOW_MINUTES``: an attempt ended by a node failure
  within this many minutes of its start is credited (default 30; 0: no credits);
- ``AIFACTORY_BILLING_BATCH_SIZE``: events fetched and applied per transaction
  (default 1024: fewer transactions, and more often all of a job's events in one);
- ``AIFACTORY_BILLING_ACK_WAIT``: seconds before JetStream redelivers an event whose
  batch was not acknowledged (e.g. the process died), default 30;
- ``AIFACTORY_BILLING_PUBLISH_USAGE``: publish a ``usage_recorded`` event per ledger
  entry (default ``true``; ``false`` keeps the ledger only, for the highest ingest rate).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from aifactory.bus.settings import BusSettings, SettingsError
from aifactory.store.settings import StoreSettings

SERVICE = "billing"
_PREFIX = "AIFACTORY_BILLING_"


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class BillingSettings:
    """Everything the billing service is configured with."""

    bus: BusSettings
    database_url: str
    metrics_port: int = 0
    credit_window_s: int = 30 * 60
    batch_size: int = 1024
    ack_wait_s: int = 30
    publish_usage: bool = True
    retry_backoff_s: tuple[float, ...] = ()
    """Delays between redeliveries of a failing event (empty: the kit's default)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BillingSettings:
        """Settings from the environment (see module docstring)."""
        env = os.environ if env is None else env
        return cls(
            bus=BusSettings.from_env(env),
            database_url=StoreSettings.from_env(SERVICE, env).url,
            metrics_port=_integer(env, _PREFIX + "METRICS_PORT", 0, 0, 65535),
            credit_window_s=60 * _integer(env, _PREFIX + "CREDIT_WINDOW_MINUTES", 30, 0, 525_600),
            batch_size=_integer(env, _PREFIX + "BATCH_SIZE", 1024, 1, 10_000),
            ack_wait_s=_integer(env, _PREFIX + "ACK_WAIT", 30, 1, 3600),
            publish_usage=_flag(env, _PREFIX + "PUBLISH_USAGE", default=True),
        )
