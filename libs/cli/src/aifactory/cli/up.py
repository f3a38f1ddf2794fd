"""``aifactory up``: the whole factory on one machine, no setup.

In order: NATS (the server already answering at the URL, else an embedded
``nats-server`` with JetStream under ``<var>/nats``), the factory's streams
(provisioned from the contracts registry), then every installed service as its own
process, each with a free ``/metrics`` port and its log in ``<var>/logs/<name>.log``
(warnings, errors and crashes also on the console, ``[name]``-prefixed). ``up`` then
asks each service over NATS (``service_status``) until all report ready, and prints
where everything is: a table of services (pid, ready after, metrics URL, log) and
the NATS and monitoring URLs. A service that exits or is not ready within
``--ready-timeout`` is an error naming it with the tail of its log: everything is
stopped and ``up`` exits 1. Otherwise it runs until SIGINT (Ctrl-C) or SIGTERM, then
stops the services (SIGTERM, grace period, SIGKILL) and the embedded server, and
exits 0. The databases are SQLite files under ``<var>``, so a second ``up`` with the
same ``--var`` resumes where the first stopped.

``services_running`` is the reusable part (``aifactory demo`` runs a factory with it
in its own process).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from nats.aio.client import Client
from rich.console import Console

from aifactory.bus.embedded import EmbeddedNats, free_port, nats_answers
from aifactory.bus.settings import BusSettings
from aifactory.cli.connection import connect
from aifactory.cli.console import USAGE_EXIT_CODE, CliError, exit_on_error, stdout_console
from aifactory.cli.local_nats import embedded_server_for, start_embedded
from aifactory.cli.master_key import ensure_master_key
from aifactory.cli.provisioning import provision_factory
from aifactory.cli.readiness import ReadyService, ServiceNotReady, wait_until_ready
from aifactory.cli.service_logs import every_line, log_file_of, problems_only
from aifactory.cli.services import SERVICE_NAMES, installed_services, service_command
from aifactory.cli.settings import resolve_settings
from aifactory.cli.supervisor import EchoFilter, Supervisor

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals that stop `up` cleanly (SIGHUP: the terminal closed; the services, in their
own sessions, would otherwise outlive it)."""
DEFAULT_READY_TIMEOUT_S = 60.0


@dataclass
class RunningFactory:
    """A factory started by ``services_running``: its services and a NATS connection."""

    settings: BusSettings
    var_dir: Path
    nc: Client
    supervisor: Supervisor
    services: list[ReadyService] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class UpOptions:
    """How ``up`` runs its services."""

    start_services: bool = True
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    follow_logs: bool = False
    only: tuple[str, ...] = ()
    """Start only these services (empty: every installed one)."""
    service_defaults: tuple[tuple[str, str], ...] = ()
    """Environment defaults for the services (the environment itself wins)."""
    monitor_url: str | None = None
    """The NATS monitoring URL, when ``up`` knows it (an embedded server)."""
    began: float = field(default_factory=time.monotonic)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def _watch_server(server: EmbeddedNats, stop: asyncio.Event) -> int | None:
    """Stop ``up`` if the embedded nats-server dies under it (Linux: via a pidfd)."""
    process = server.process
    if process is None or not hasattr(os, "pidfd_open"):
        return None
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:
        return None
    exited = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(pidfd, exited.set)
    try:
        await exited.wait()
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    stop.set()
    return process.wait()


async def _serve(
    settings: BusSettings,
    var_dir: Path,
    *,
    options: UpOptions,
    embedded: EmbeddedNats | None,
    out: Console,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    watcher = None
    if embedded is not None:
        watcher = asyncio.create_task(_watch_server(embedded, stop))
    try:
        async with services_running(settings, var_dir, options=options, out=out, stop=stop):
            if not stop.is_set():
                out.print("ready — Ctrl-C to stop")
            await stop.wait()
            out.print("stopping")
    finally:
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    code = watcher.result() if watcher is not None and not watcher.cancelled() else None
    if code is not None and embedded is not None:
        raise CliError(
            f"the embedded nats-server exited unexpectedly (code {code}); see {embedded.log_file}"
        )


def print_status_table(
    out: Console, factory: RunningFactory, *, monitor_url: str | None, began: float
) -> None:
    """Where everything is: one row per service, then NATS and its monitoring endpoint."""
    if factory.services:
        rows = [("service", "pid", "ready after", "metrics", "log")]
        rows += [
            (
                ready.name,
                str(ready.pid),
                f"{ready.ready_after_s:.2f}s",
                ready.status.metrics_url or "-",
                str(ready.log_file or "-"),
            )
            for ready in factory.services
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            out.print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        out.print(
            f"services: all {len(factory.services)} ready "
            f"{time.monotonic() - began:.2f}s after up started"
        )
    out.print(f"nats: {factory.settings.display_url}")
    out.print(f"nats monitoring: {monitor_url or 'not known (a server up did not start)'}")
    out.print(f"state: {factory.var_dir.resolve()} (logs in {factory.var_dir.resolve() / 'logs'})")


async def _start_services(
    supervisor: Supervisor,
    names: list[str],
    settings: BusSettings,
    var_dir: Path,
    *,
    echo: EchoFilter,
    defaults: tuple[tuple[str, str], ...] = (),
) -> tuple[dict[str, float], dict[str, Path]]:
    started_at: dict[str, float] = {}
    log_files: dict[str, Path] = {}
    for name in names:
        log_files[name] = log_file_of(var_dir, name)
        command = service_command(
            name,
            nats_url=settings.nats_url,
            var_dir=var_dir,
            metrics_port=free_port(),
            base_env={**dict(defaults), **os.environ},
        )
        started_at[name] = time.monotonic()
        try:
            await supervisor.start(command, log_file=log_files[name], echo=echo)
        except OSError as error:
            raise CliError(f"could not start service {name}: {error}") from None
    return started_at, log_files


async def _until_ready_or_stopped(
    factory: RunningFactory,
    names: list[str],
    *,
    started_at: dict[str, float],
    log_files: dict[str, Path],
    options: UpOptions,
    stop: asyncio.Event | None,
) -> list[ReadyService] | None:
    waiting = asyncio.create_task(
        wait_until_ready(
            factory.nc,
            names,
            factory.supervisor,
            namespace=factory.settings.namespace,
            started_at=started_at,
            log_files=log_files,
            timeout=options.ready_timeout_s,
        )
    )
    stopped = asyncio.create_task((stop or asyncio.Event()).wait())
    try:
        await asyncio.wait([waiting, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not waiting.done():
            waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(waiting, stopped, return_exceptions=True)
    if waiting.cancelled():
        return None
    try:
        return waiting.result()
    except ServiceNotReady as error:
        raise CliError(str(error)) from None


def _chosen_services(options: UpOptions) -> list[str]:
    unknown = sorted(set(options.only) - set(SERVICE_NAMES))
    if unknown:
        raise CliError(
            f"unknown service {', '.join(unknown)}; choose from {', '.join(SERVICE_NAMES)}",
            USAGE_EXIT_CODE,
        )
    return [name for name in installed_services() if not options.only or name in options.only]


async def _close_quietly(nc: Client) -> None:
    """Close the connection; nats-py can raise CancelledError when the server is gone."""
    if nc.is_closed:
        return
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(nc.close(), timeout=5)


@contextlib.asynccontextmanager
async def services_running(
    settings: BusSettings,
    var_dir: Path,
    *,
    options: UpOptions,
    out: Console,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[RunningFactory]:
    """Provision the streams, start every installed service and wait until all are ready.

    Yields once every service reported ready (or ``stop`` was set meanwhile: then
    ``services`` is empty); on exit the services are stopped. ``CliError`` when a
    service cannot start or become ready (everything started is stopped first).
    """
    summary = await provision_factory(settings)
    out.print(f"streams: {summary.describe()}")
    names = _chosen_services(options) if options.start_services else []
    async with Supervisor(out) as supervisor:
        nc = await connect(settings.nats_url)
        factory = RunningFactory(settings, var_dir, nc, supervisor)
        try:
            if not options.start_services:
                out.print("services: not started (--no-services)")
            elif not names:
                looked_for = ", ".join(f"aifactory.{name}" for name in SERVICE_NAMES)
                out.print(
                    f"services: none installed yet (looked for {looked_for}); running NATS only"
                )
            else:
                out.print(f"services: starting {', '.join(names)}")
                if "keys" in names and (created := ensure_master_key(var_dir, os.environ)):
                    out.print(
                        f"keys: created the master key {created} (mode 0600); back it up "
                        "offline: every tenant key is wrapped under it"
                    )
                echo = every_line if options.follow_logs else problems_only
                started_at, log_files = await _start_services(
                    supervisor,
                    names,
                    settings,
                    var_dir,
                    echo=echo,
                    defaults=options.service_defaults,
                )
                ready = await _until_ready_or_stopped(
                    factory,
                    names,
                    started_at=started_at,
                    log_files=log_files,
                    options=options,
                    stop=stop,
                )
                factory.services = ready or []
            if stop is None or not stop.is_set():
                print_status_table(
                    out, factory, monitor_url=options.monitor_url, began=options.began
                )
            yield factory
        finally:
            await _close_quietly(nc)


def nats_for(settings: BusSettings, var_dir: Path, out: Console) -> EmbeddedNats | None:
    """Use the NATS answering at the URL, or start an embedded one (returned, to stop later)."""
    if nats_answers(settings.nats_url):
        out.print(f"nats: using the NATS server already running at {settings.display_url}")
        return None
    embedded = embedded_server_for(settings.nats_url, var_dir)
    try:
        start_embedded(embedded)
    except BaseException:
        # Ctrl-C / SIGTERM while it starts: the caller never gets the server to stop,
        # and it runs in its own session, so stop it here.
        embedded.stop()
        raise
    out.print(f"nats: started embedded nats-server on {embedded.url} (store {embedded.store_dir})")
    out.print(f"nats: monitoring at {embedded.monitor_url}, log {embedded.log_file}")
    return embedded


def run_up(
    settings: BusSettings, var_dir: Path, *, options: UpOptions | None = None, out: Console
) -> None:
    """Run the factory until interrupted; everything started here is stopped on return."""
    options = options or UpOptions()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    embedded: EmbeddedNats | None = None
    try:
        embedded = nats_for(settings, var_dir, out)
        if embedded is not None:
            options = dataclasses.replace(options, monitor_url=embedded.monitor_url)
        asyncio.run(_serve(settings, var_dir, options=options, embedded=embedded, out=out))
    except KeyboardInterrupt:
        out.print("stopping (interrupted)")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if embedded is not None:
            embedded.stop()
            out.print("nats: stopped embedded nats-server")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)


def up(
    *,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats-url",
            help="NATS to use or start (default: AIFACTORY_NATS_URL, NATS_URL, nats://127.0.0.1:4222).",
        ),
    ] = None,
    var: Annotated[
        Path, typer.Option("--var", help="State directory: NATS store and logs, service databases.")
    ] = Path("var"),
    no_services: Annotated[
        bool, typer.Option("--no-services", help="Run NATS and provision streams only.")
    ] = False,
    ready_timeout: Annotated[
        float,
        typer.Option("--ready-timeout", min=1.0, help="Seconds each service has to report ready."),
    ] = DEFAULT_READY_TIMEOUT_S,
    follow_logs: Annotated[
        bool,
        typer.Option(
            "--follow-logs", help="Print every service log line (default: warnings and errors)."
        ),
    ] = False,
    service: Annotated[
        list[str] | None,
        typer.Option("--service", help="Start only this service (repeatable; default: all)."),
    ] = None,
) -> None:
    """Start NATS (embedded if none answers), provision the streams, run every service."""
    options = UpOptions(
        start_services=not no_services,
        ready_timeout_s=ready_timeout,
        follow_logs=follow_logs,
        only=tuple(service or ()),
    )
    with exit_on_error("up"):
        run_up(resolve_settings(nats_url), var, options=options, out=stdout_console())
