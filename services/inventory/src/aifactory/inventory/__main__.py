"""Run the inventory service: ``python -m aifactory.inventory`` (until SIGINT/SIGTERM)."""

from __future__ import annotations

import asyncio
import gc
import sys

import structlog

from aifactory.bus.settings import SettingsError
from aifactory.inventory.app import build_service
from aifactory.inventory.config import SERVICE, InventorySettings
from aifactory.observability.logging import configure_logging


def main() -> int:
    """Configure logging, read settings, run the service; exit code 2 on bad settings."""
    configure_logging(SERVICE)
    log = structlog.get_logger("aifactory.inventory")
    try:
        settings = InventorySettings.from_env()
    except (SettingsError, ValueError) as error:
        log.error("invalid_settings", error=str(error))  # noqa: TRY400 - the message says it all
        return 2
    log.info(
        "inventory_starting", nats_url=settings.bus.display_url, prefix=settings.bus.subject_prefix
    )
    # Long-lived objects (modules, contracts, the engine) leave the collector's view,
    # so full collections stay short and do not show in query latency tails.
    gc.freeze()
    return asyncio.run(build_service(settings).run())


if __name__ == "__main__":
    sys.exit(main())
