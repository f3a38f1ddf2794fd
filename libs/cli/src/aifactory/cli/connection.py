"""Connecting the CLI to NATS, with one clear error instead of a traceback.

A quick TCP probe first (so an absent server is reported in about a second rather
than after nats-py's reconnect attempts), then a nats-py connection whose error
callback stays quiet: nats-py's default one logs every failed attempt with a
traceback. Failures raise ``CliError`` with exit code 2 and the hint to run
``aifactory up``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from aifactory.bus.embedded import nats_answers
from aifactory.bus.settings import SettingsError, parse_servers
from aifactory.cli.console import USAGE_EXIT_CODE, CliError

CONNECT_TIMEOUT_S = 10.0


def unreachable(url: str, reason: str = "") -> CliError:
    """The error for a NATS URL nothing useful answers at."""
    detail = f" ({reason})" if reason else ""
    return CliError(
        f"cannot reach NATS at {url}{detail}: is `aifactory up` running?", USAGE_EXIT_CODE
    )


async def connect(
    url: str,
    *,
    reconnect_forever: bool = False,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """A connection to ``url`` (one server or a cluster's comma-separated list).

    ``CliError`` (exit 2) when NATS cannot be reached.
    """
    try:
        servers = list(parse_servers(url))
    except SettingsError as error:
        raise CliError(str(error), USAGE_EXIT_CODE) from None
    if not await asyncio.to_thread(nats_answers, url):
        raise unreachable(url)

    async def ignore_error(error: Exception) -> None:
        """Failed attempts are retried; the final failure is reported by connect."""

    async def noop() -> None:
        """No reaction needed."""

    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            return await nats.connect(
                servers=servers,
                connect_timeout=3,
                reconnect_time_wait=1,
                max_reconnect_attempts=-1 if reconnect_forever else 3,
                error_cb=ignore_error,
                disconnected_cb=on_disconnect or noop,
                reconnected_cb=on_reconnect or noop,
            )
    except (TimeoutError, OSError, NatsError) as error:
        raise unreachable(url, str(error) or type(error).__name__) from None
