"""Run the keys service: ``python -m aifactory.keys`` (settings in config.py).

It refuses to start, with one line on stderr and exit status 2, when the root of
trust (master key) is missing or unusable, a setting is invalid, or NATS cannot be
reached; otherwise it serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aifactory.bus.connection import BusUnavailable
from aifactory.bus.settings import SettingsError
from aifactory.keys.app import build_service
from aifactory.keys.config import KeysSettings
from aifactory.keys.crypto import RootOfTrustError, load_master_key_root
from aifactory.observability.logging import configure_logging


def main() -> int:
    """Start the keys service; the process exit status."""
    configure_logging("keys")
    try:
        settings = KeysSettings.from_env()
        root = load_master_key_root(os.environ, settings.master_key_file)
    except (RootOfTrustError, SettingsError) as error:
        sys.stderr.write(f"aifactory keys: cannot start: {error}\n")
        return 2
    try:
        return asyncio.run(build_service(settings, root).run())
    except BusUnavailable as error:
        sys.stderr.write(f"aifactory keys: cannot start: {error}\n")
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
