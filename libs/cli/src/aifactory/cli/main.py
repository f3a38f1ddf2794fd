"""The ``aifactory`` operator CLI: the typer application and its entry point.

Each command lives in its own module (``up``, ``tail``, ``contracts_cmd``); this one
wires them together, configures logging for the CLI process itself (warnings and
errors only, on stderr, so ``tail --json`` output stays clean) and provides
``aifactory version``. ``python -m aifactory.cli.main`` runs it too.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

import typer

from aifactory.bus.embedded import EmbeddedNatsError, find_nats_server
from aifactory.cli.billing_cmd import billing_app, invoice
from aifactory.cli.console import stderr_console, stdout_console
from aifactory.cli.contracts_cmd import contracts_app
from aifactory.cli.demo.command import demo
from aifactory.cli.health_cmd import AGENT_CONTEXT, agent, alerts, health, silence
from aifactory.cli.inventory_cmd import inventory_app, node_app, nodes
from aifactory.cli.jobs_cmd import job_app, jobs, queue, submit
from aifactory.cli.keys_cmd import keys_app
from aifactory.cli.tail import tail
from aifactory.cli.up import up
from aifactory.observability.logging import LoggingConfigError, configure_logging

app = typer.Typer(
    name="aifactory",
    help="Operate an aifactory control plane: run it, watch its events, check its contracts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command("up")(up)
app.command("demo")(demo)
app.command("tail")(tail)
app.add_typer(contracts_app, name="contracts")
app.command("health")(health)
app.command("alerts")(alerts)
app.command("silence")(silence)
app.command("agent", context_settings=AGENT_CONTEXT)(agent)
app.add_typer(inventory_app, name="inventory")
app.command("nodes")(nodes)
app.add_typer(node_app, name="node")
app.command("submit")(submit)
app.command("jobs")(jobs)
app.add_typer(job_app, name="job")
app.command("queue")(queue)
app.add_typer(keys_app, name="keys")
app.command("invoice")(invoice)
app.add_typer(billing_app, name="billing")


@app.callback()
def _configure() -> None:
    """Logging for the CLI process: warnings and up, to stderr."""
    try:
        configure_logging("cli", level="WARNING", stream=sys.stderr)
    except LoggingConfigError as error:
        stderr_console().print(f"aifactory: {error}", style="red")
        raise typer.Exit(2) from None


def _nats_server_version() -> str:
    try:
        binary = find_nats_server()
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except (EmbeddedNatsError, OSError, subprocess.TimeoutExpired):
        return "not found"
    reported = result.stdout.strip() or result.stderr.strip() or "unknown"
    return reported.removeprefix("nats-server:").strip()


@app.command("version")
def version() -> None:
    """Print the versions of the CLI and the nats-server it would start."""
    try:
        cli = package_version("aifactory-cli")
    except PackageNotFoundError:
        cli = "unknown (not installed)"
    out = stdout_console()
    out.print(f"aifactory {cli}")
    out.print(f"nats-server {_nats_server_version()}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
