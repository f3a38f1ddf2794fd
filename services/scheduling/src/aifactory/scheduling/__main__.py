"""Run the scheduling service: ``python -m aifactory.scheduling`` (until SIGINT/SIGTERM)."""

from __future__ import annotations

import asyncio
import gc
import sys

import structlog

from aifactory.bus.settings import SettingsError
from aifactory.observability.logging import configure_logging
from aifactory.scheduling.app import build_service
from aifactory.scheduling.config import SERVICE, SchedulingSettings


def main() -> int:
    """Configure logging, read settings, run the service; exit code 2 on bad settings."""
    configure_logging(SERVICE)
    log = structlog.get_logger("aifactory.scheduling")
    try:
        settings = SchedulingSettings.from_env()
    except (SettingsError, ValueError) as error:
        log.error("invalid_settings", error=str(error))  # noqa: TRY400 - the message says it all
        return 2
    log.info(
        "scheduling_starting", nats_url=settings.bus.display_url, prefix=settings.bus.subject_prefix
    )
    gc.freeze()
    return asyncio.run(build_service(settings).run())


if __name__ == "__main__":
    sys.exit(main())
