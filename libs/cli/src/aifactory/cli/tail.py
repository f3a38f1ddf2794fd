"""``aifactory tail``: live and replayed factory events, for SREs.

Every stream whose subjects overlap FILTER (a subject pattern inside the factory
namespace, default ``factory.>``) gets one ordered consumer (ephemeral, in memory,
flow-controlled) filtered to that overlap; their messages are merged into one
output. Where to start: only new events (default), ``--since`` a duration or time
(``DeliverPolicy.BY_START_TIME``), or ``--from-seq`` a stream sequence, which needs
a FILTER that selects one stream. ``--tenant`` and ``--type`` filter on the
``ce-tenant`` and ``ce-type`` headers. ``--no-follow`` stops once every consumer has
delivered what its stream held when tail started (the message carrying
``num_pending == 0``), which makes tail usable in scripts and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import sys
from dataclasses import dataclass, field
from typing import Annotated

import typer
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import ConsumerConfig, DeliverPolicy
from rich.console import Console

from aifactory.bus.settings import BusSettings
from aifactory.cli.connection import connect
from aifactory.cli.console import (
    USAGE_EXIT_CODE,
    CliError,
    exit_on_error,
    stderr_console,
    stdout_console,
)
from aifactory.cli.durations import InvalidSince, parse_since
from aifactory.cli.event_lines import TailedEvent, type_matches
from aifactory.cli.settings import resolve_settings
from aifactory.cli.subjects import stream_filters
from aifactory.contracts.catalog import load_all

DEFAULT_FILTER = "factory.>"


@dataclass(frozen=True, slots=True)
class TailOptions:
    """What to show and from where."""

    subject_filter: str = DEFAULT_FILTER
    since: dt.datetime | None = None
    from_seq: int | None = None
    tenant: str | None = None
    ce_type: str | None = None
    as_json: bool = False
    follow: bool = True

    def wants(self, event: TailedEvent) -> bool:
        """Whether ``event`` passes ``--tenant`` and ``--type``."""
        if self.tenant is not None and event.tenant != self.tenant:
            return False
        return self.ce_type is None or type_matches(self.ce_type, event.ce_type)

    def consumer_config(self) -> ConsumerConfig:
        """Where each ordered consumer starts."""
        if self.from_seq is not None:
            return ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.from_seq
            )
        if self.since is not None:
            return ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=self.since
            )
        return ConsumerConfig(deliver_policy=DeliverPolicy.NEW)


@dataclass(frozen=True, slots=True)
class StreamSelection:
    """One stream to read and the consumer filters selecting FILTER within it."""

    stream: str
    filters: tuple[str, ...]


@dataclass
class _Progress:
    """Which streams have delivered everything they held at start (for --no-follow)."""

    pending: set[str] = field(default_factory=set)

    @property
    def caught_up(self) -> bool:
        return not self.pending


async def select_streams(nc: Client, wire_filter: str) -> list[StreamSelection]:
    """Every stream with subjects overlapping ``wire_filter``, sorted by name."""
    js = nc.jetstream()
    selections: list[StreamSelection] = []
    offset = 0
    while batch := await js.streams_info(offset):
        offset += len(batch)
        for info in batch:
            filters = stream_filters(wire_filter, list(info.config.subjects or []))
            if filters and info.config.name:
                selections.append(StreamSelection(info.config.name, tuple(filters)))
    return sorted(selections, key=lambda s: s.stream)


class _Printer:
    """Writes events as lines or JSON; remembers a closed stdout (``tail | head``)."""

    def __init__(self, options: TailOptions, console: Console) -> None:
        self._options = options
        self._console = console
        self._width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        self.closed = False

    def show(self, event: TailedEvent) -> None:
        if self.closed or not self._options.wants(event):
            return
        try:
            if self._options.as_json:
                sys.stdout.write(event.to_json() + "\n")
                sys.stdout.flush()
            else:
                self._console.print(event.to_line(self._width))
        except BrokenPipeError:
            self.closed = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())


async def _tail(settings: BusSettings, options: TailOptions, console: Console) -> None:
    namespace = settings.namespace
    registry = load_all()
    notices = stderr_console()
    wire_filter = namespace.subject(options.subject_filter)

    async def disconnected() -> None:
        notices.print("tail: disconnected from NATS; reconnecting", style="yellow")

    async def reconnected() -> None:
        notices.print("tail: reconnected", style="yellow")

    nc = await connect(
        settings.nats_url,
        reconnect_forever=options.follow,
        on_disconnect=disconnected,
        on_reconnect=reconnected,
    )
    try:
        selections = await select_streams(nc, wire_filter)
        if not selections:
            raise CliError(
                f"no stream at {settings.nats_url} holds subjects matching {wire_filter!r}; "
                "check FILTER, or run `aifactory up` to provision the factory streams",
                USAGE_EXIT_CODE,
            )
        if options.from_seq is not None and len(selections) > 1:
            names = ", ".join(s.stream for s in selections)
            raise CliError(
                f"--from-seq is a sequence within one stream, but {options.subject_filter!r} "
                f"matches {names}; narrow FILTER to one of them (e.g. factory.<domain>.>)",
                USAGE_EXIT_CODE,
            )
        await _consume(nc, selections, options, _Printer(options, console), namespace, registry)
    finally:
        with contextlib.suppress(NatsError, OSError, TimeoutError):
            await nc.close()


async def _consume(
    nc: Client,
    selections: list[StreamSelection],
    options: TailOptions,
    printer: _Printer,
    namespace: object,
    registry: object,
) -> None:
    raise NotImplementedError
