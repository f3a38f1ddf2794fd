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
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from rich.console import Console

from aifactory.bus.settings import BusSettings, Namespace
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
from aifactory.contracts.registry import Registry

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

    closing = asyncio.Event()

    async def disconnected() -> None:
        if not closing.is_set():
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
                f"no stream at {settings.display_url} holds subjects matching {wire_filter!r}; "
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
        await _consume(
            nc,
            selections=selections,
            options=options,
            printer=_Printer(options, console),
            namespace=namespace,
            registry=registry,
        )
    except NatsError as error:
        raise CliError(
            f"JetStream request to {settings.display_url} failed: {error or type(error).__name__}; "
            "is JetStream enabled on that server?",
            USAGE_EXIT_CODE,
        ) from None
    finally:
        closing.set()
        with contextlib.suppress(NatsError, OSError, TimeoutError):
            await nc.close()


def _num_pending(msg: Msg) -> int | None:
    try:
        return msg.metadata.num_pending
    except (NatsError, ValueError, IndexError):
        return None


async def _consume(
    nc: Client,
    *,
    selections: list[StreamSelection],
    options: TailOptions,
    printer: _Printer,
    namespace: Namespace,
    registry: Registry,
) -> None:
    js = nc.jetstream()
    arrivals: asyncio.Queue[tuple[str, Msg]] = asyncio.Queue()
    progress = _Progress(pending={s.stream for s in selections})
    subscriptions: list[tuple[str, JetStreamContext.PushSubscription]] = []
    for selection in selections:

        async def on_message(msg: Msg, stream: str = selection.stream) -> None:
            arrivals.put_nowait((stream, msg))

        config = options.consumer_config()
        if len(selection.filters) > 1:
            config.filter_subjects = list(selection.filters)
        subscription = await js.subscribe(
            selection.filters[0],
            stream=selection.stream,
            cb=on_message,
            ordered_consumer=True,
            config=config,
        )
        subscriptions.append((selection.stream, subscription))
    if options.follow:
        streams = ", ".join(s.stream for s in selections)
        stderr_console().print(f"tail: following {streams}; Ctrl-C to stop", style="dim")
    if not options.follow:
        for stream, subscription in subscriptions:
            info = await subscription.consumer_info()
            delivered = info.delivered.consumer_seq if info.delivered else 0
            if not info.num_pending and not delivered:
                progress.pending.discard(stream)
    try:
        while options.follow or not progress.caught_up:
            stream, msg = await arrivals.get()
            printer.show(
                TailedEvent.from_msg(msg, stream=stream, namespace=namespace, registry=registry)
            )
            if printer.closed:
                return
            if _num_pending(msg) == 0:
                progress.pending.discard(stream)
    finally:
        for _, subscription in subscriptions:
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                await subscription.unsubscribe()


def tail(
    subject_filter: Annotated[
        str,
        typer.Argument(
            metavar="FILTER",
            help="Subject pattern inside the factory namespace, NATS wildcards allowed.",
        ),
    ] = DEFAULT_FILTER,
    *,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="Replay from this long ago (30s, 10m, 2h, 1d) or an RFC 3339 time."
        ),
    ] = None,
    from_seq: Annotated[
        int | None,
        typer.Option(
            "--from-seq",
            min=1,
            help="Replay from this stream sequence (FILTER must hit one stream).",
        ),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant (ce-tenant).")
    ] = None,
    ce_type: Annotated[
        str | None,
        typer.Option(
            "--type", help="Only this CloudEvents type, full or a suffix (widget_registered)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow", help="Keep waiting for new events, or stop once caught up."
        ),
    ] = True,
    nats_url: Annotated[
        str | None,
        typer.Option("--nats-url", help="NATS URL (default: AIFACTORY_NATS_URL, NATS_URL)."),
    ] = None,
) -> None:
    """Show factory events as they happen, or replay them."""
    with exit_on_error("tail"):
        if since is not None and from_seq is not None:
            raise CliError("--since and --from-seq are alternatives; give one", USAGE_EXIT_CODE)
        try:
            start = parse_since(since, dt.datetime.now(dt.UTC)) if since is not None else None
        except InvalidSince as error:
            raise CliError(str(error), USAGE_EXIT_CODE) from None
        options = TailOptions(
            subject_filter=subject_filter,
            since=start,
            from_seq=from_seq,
            tenant=tenant,
            ce_type=ce_type,
            as_json=as_json,
            follow=follow,
        )
        settings = resolve_settings(nats_url)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_tail(settings, options, stdout_console()))
