"""Run the health service: ``python -m aifactory.health`` (until SIGINT/SIGTERM)."""

from __future__ import annotations

import asyncio
import gc
import sys

import structlog

from aifactory.bus.settings import SettingsError
from aifactory.health.app import build_service
from aifactory.health.config import SERVICE, HealthSettings
from aifactory.observability.logging import configure_logging


def main() -> int:
    """Configure logging, read settings, run the service; exit code 2 on bad settings."""
    configure_logging(SERVICE)
    log = structlog.get_logger("aifactory.health")
    try:
        settings = HealthSettings.from_env()
    except (SettingsError, ValueError) as error:
        log.error("invalid_settings", error=str(error))  # noqa: TRY400 - the message says it all
        return 2
    log.info(
        "health_starting", nats_url=settings.bus.display_url, prefix=settings.bus.subject_prefix
    )
    gc.freeze()
    return asyncio.run(build_service(settings).run())


if __name__ == "__main__":
    sys.exit(main())
