"""``aifactory up``: the whole factory on one machine, no setup.

In order: NATS (the server already answering at the URL, else an embedded
``nats-server`` with JetStream under ``<var>/nats``), the factory's streams
(provisioned from the contracts registry), then every installed service as its own
process with prefixed output. It runs until SIGINT (Ctrl-C) or SIGTERM, then stops
the services (SIGTERM, grace period, SIGKILL) and the embedded server, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console

from aifactory.bus.embedded import EmbeddedNats, nats_answers
from aifactory.bus.settings import BusSettings
from aifactory.cli.console import CliError, exit_on_error, stdout_console
from aifactory.cli.local_nats import embedded_server_for, start_embedded
from aifactory.cli.master_key import ensure_master_key
from aifactory.cli.provisioning import provision_factory
from aifactory.cli.services import SERVICE_NAMES, installed_services, service_command
from aifactory.cli.settings import resolve_settings
from aifactory.cli.supervisor import Supervisor

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    start_services: bool,
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
        await _run_services(settings, var_dir, start_services=start_services, stop=stop, out=out)
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


async def _run_services(
    settings: BusSettings,
    var_dir: Path,
    *,
    start_services: bool,
    stop: asyncio.Event,
    out: Console,
) -> None:
    summary = await provision_factory(settings)
    out.print(f"streams: {summary.describe()}")
    names = installed_services()
    async with Supervisor(out) as supervisor:
        if not start_services:
            out.print("services: not started (--no-services)")
        elif not names:
            looked_for = ", ".join(f"aifactory.{name}" for name in SERVICE_NAMES)
            out.print(f"services: none installed yet (looked for {looked_for}); running NATS only")
        else:
            out.print(f"services: starting {', '.join(names)}")
            if "keys" in names and (created := ensure_master_key(var_dir, os.environ)):
                out.print(
                    f"keys: created the master key {created} (mode 0600); back it up "
                    "offline: every tenant key is wrapped under it"
                )
            for name in names:
                try:
                    await supervisor.start(
                        service_command(name, nats_url=settings.nats_url, var_dir=var_dir)
                    )
                except OSError as error:
                    raise CliError(f"could not start service {name}: {error}") from None
        if not stop.is_set():
            out.print("ready — Ctrl-C to stop")
        await stop.wait()
        out.print("stopping")


def run_up(
    settings: BusSettings, var_dir: Path, *, start_services: bool = True, out: Console
) -> None:
    """Run the factory until interrupted; everything started here is stopped on return."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    embedded: EmbeddedNats | None = None
    try:
        if nats_answers(settings.nats_url):
            out.print(f"nats: using the NATS server already running at {settings.nats_url}")
        else:
            embedded = embedded_server_for(settings.nats_url, var_dir)
            start_embedded(embedded)
            out.print(
                f"nats: started embedded nats-server on {embedded.url} (store {embedded.store_dir})"
            )
            out.print(f"nats: monitoring at {embedded.monitor_url}, log {embedded.log_file}")
        asyncio.run(
            _serve(settings, var_dir, start_services=start_services, embedded=embedded, out=out)
        )
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
) -> None:
    """Start NATS (embedded if none answers), provision the streams, run every service."""
    with exit_on_error("up"):
        run_up(
            resolve_settings(nats_url), var, start_services=not no_services, out=stdout_console()
        )
