"""Bus settings for CLI commands: the environment, overridden by ``--nats-url``.

Every command that talks to NATS reads ``BusSettings.from_env()`` (so
``AIFACTORY_NATS_URL``/``NATS_URL`` and ``AIFACTORY_SUBJECT_PREFIX`` apply) and lets an
explicit ``--nats-url`` win. An invalid environment value is a usage error.
"""

from __future__ import annotations

import dataclasses

from aifactory.bus.settings import BusSettings, SettingsError
from aifactory.cli.console import USAGE_EXIT_CODE, CliError


def resolve_settings(nats_url: str | None) -> BusSettings:
    """The bus settings a command uses: environment first, ``--nats-url`` over it."""
    try:
        settings = BusSettings.from_env()
    except SettingsError as error:
        raise CliError(str(error), USAGE_EXIT_CODE) from None
    if nats_url:
        settings = dataclasses.replace(settings, nats_url=nats_url)
    return settings
