"""``aifactory demo``: the command line of the demo (see ``orchestrator`` for what it does)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aifactory.cli.console import USAGE_EXIT_CODE, CliError, exit_on_error, stdout_console
from aifactory.cli.demo.factory import MAX_NODES, MIN_NODES
from aifactory.cli.demo.orchestrator import DemoOptions, run_demo
from aifactory.cli.demo.tenants import TENANTS
from aifactory.cli.durations import InvalidSince, parse_duration
from aifactory.cli.settings import resolve_settings

MIN_DURATION_S = 10.0


def _duration_s(text: str) -> float:
    try:
        seconds = parse_duration(text).total_seconds()
    except InvalidSince:
        raise CliError(
            f"--duration takes a duration like 2m, 90s or 1m30s; got {text!r}", USAGE_EXIT_CODE
        ) from None
    if seconds < MIN_DURATION_S:
        raise CliError(f"--duration must be at least {MIN_DURATION_S:g}s", USAGE_EXIT_CODE)
    return seconds


def demo(
    *,
    nodes: Annotated[
        int,
        typer.Option(
            "--nodes", min=MIN_NODES, max=MAX_NODES, help="Simulated nodes (8 accelerators each)."
        ),
    ] = 24,
    tenants: Annotated[
        int, typer.Option("--tenants", min=1, max=len(TENANTS), help="Tenants (EU, US, anywhere).")
    ] = len(TENANTS),
    duration: Annotated[
        str, typer.Option("--duration", help="How long the workload runs (e.g. 2m, 90s).")
    ] = "2m",
    rate: Annotated[
        float, typer.Option("--rate", min=1.0, max=60_000.0, help="Jobs submitted per minute.")
    ] = 600.0,
    var: Annotated[
        Path,
        typer.Option("--var", help="State directory (wiped at the start of each run)."),
    ] = Path("var/demo"),
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats-url", help="NATS to use (default: an embedded server on a free port)."
        ),
    ] = None,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--no-live", help="Live view, or plain progress lines (default: by terminal)."
        ),
    ] = None,
    follow_logs: Annotated[
        bool, typer.Option("--follow-logs", help="Print every service log line.")
    ] = False,
    ready_timeout: Annotated[
        float, typer.Option("--ready-timeout", min=1.0, help="Seconds each service has to start.")
    ] = 60.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the workload mix.")] = 0,
) -> None:
    """Run a simulated factory under load, inject faults, show it live, print the invoices."""
    with exit_on_error("demo"):
        options = DemoOptions(
            nodes=nodes,
            tenants=tenants,
            duration_s=_duration_s(duration),
            jobs_per_minute=rate,
            var_dir=var,
            nats_url=nats_url,
            ready_timeout_s=ready_timeout,
            follow_logs=follow_logs,
            live=live,
            seed=seed,
        )
        run_demo(resolve_settings(None), options, stdout_console())
