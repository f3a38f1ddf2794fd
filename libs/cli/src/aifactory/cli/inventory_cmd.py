"""``aifactory inventory``, ``aifactory nodes`` and ``aifactory node``: the inventory, by NATS.

- ``aifactory inventory import FILE [--dry-run]`` sends the factory description to the
  inventory service (``ImportFactory``) and prints what it created, updated or found
  unchanged; a bad file is reported with its line and nothing is applied.
- ``aifactory inventory export [--site S] [-o FILE]`` prints the inventory as a description.
- ``aifactory nodes [--site --rack --model --state --tenant --shared] [--json]`` lists
  nodes (all pages) as a table, or as JSON lines.
- ``aifactory node cordon|drain|uncordon|maintenance|retire ID --reason TEXT`` changes a
  node's admin state; the caller (``user@host``) is recorded as the actor.

Everything goes through the contracts with ``request``; the CLI never imports the service.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import typer
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import BusSettings
from aifactory.cli.connection import connect
from aifactory.cli.console import USAGE_EXIT_CODE, CliError, exit_on_error, stdout_console
from aifactory.cli.settings import resolve_settings
from aifactory.contracts.base import Contract
from aifactory.contracts.inventory.v1 import (
    CordonNode,
    DrainNode,
    ExportFactory,
    FactoryExport,
    ImportFactory,
    ImportSummary,
    ListNodes,
    Node,
    NodePage,
    NodeStateCommand,
    NodeStateResult,
    RetireNode,
    StartNodeMaintenance,
    UncordonNode,
)

R = TypeVar("R", bound=Contract)
T = TypeVar("T")
REQUEST_TIMEOUT_S = 30.0

inventory_app = typer.Typer(
    help="Import and export the factory description (sites, racks, nodes, dedications).",
    no_args_is_help=True,
)
node_app = typer.Typer(help="Change a node's admin state.", no_args_is_help=True)

NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", help="NATS URL (default: AIFACTORY_NATS_URL, NATS_URL)."),
]
_json_encoder = msgspec.json.Encoder()


def caller() -> str:
    """The actor recorded for changes made from this CLI: ``user@host``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:128]


def _failure(error: CommandFailed) -> CliError:
    details = error.error.details
    where = (
        f" (line {details['line']})"
        if "line" in details and details["line"] not in error.error.message
        else ""
    )
    return CliError(f"{error.error.code}: {error.error.message}{where}")


def _run(settings: BusSettings, conversation: Callable[[Client], Awaitable[T]]) -> T:
    async def talk() -> T:
        nc = await connect(settings.nats_url)
        try:
            return await conversation(nc)
        except CommandFailed as error:
            raise _failure(error) from None
        except ServiceUnavailable as error:
            raise CliError(
                f"the inventory service is not answering ({error}): is `aifactory up` running?",
                USAGE_EXIT_CODE,
            ) from None
        finally:
            await nc.close()

    return asyncio.run(talk())


def _ask(settings: BusSettings, command: Contract, reply: type[R]) -> R:
    return _run(
        settings,
        lambda nc: request(
            nc, command, reply, namespace=settings.namespace, timeout=REQUEST_TIMEOUT_S
        ),
    )


@inventory_app.command("import")
def import_description(
    file: Annotated[Path, typer.Argument(help="The factory description (YAML).")],
    *,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; apply nothing.")
    ] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Apply a factory description: idempotent, and all or nothing."""
    with exit_on_error("inventory import"):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise CliError(f"cannot read {file}: {error}", USAGE_EXIT_CODE) from None
        command = ImportFactory(description_yaml=text, actor=caller(), dry_run=dry_run)
        summary = _ask(resolve_settings(nats_url), command, ImportSummary)
        out = stdout_console()
        prefix = "would " if dry_run else ""
        for kind in ("sites", "racks", "nodes"):
            created = getattr(summary, f"{kind}_created")
            updated = getattr(summary, f"{kind}_updated")
            unchanged = getattr(summary, f"{kind}_unchanged")
            out.print(
                f"{kind}: {prefix}create {created}, {prefix}update {updated}, unchanged {unchanged}"
            )
        out.print(f"dedications: {prefix}change {summary.dedications_changed}")
        out.print(f"events emitted: {summary.events}")


@inventory_app.command("export")
def export_description(
    *,
    site: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Print the inventory as a factory description (importable as is)."""
    with exit_on_error("inventory export"):
        exported = _ask(resolve_settings(nats_url), ExportFactory(site_id=site), FactoryExport)
        if output is None:
            typer.echo(exported.description_yaml, nl=False)
        else:
            output.write_text(exported.description_yaml, encoding="utf-8")
            counts = f"{exported.sites} sites, {exported.racks} racks, {exported.nodes} nodes"
            stdout_console().print(f"wrote {output}: {counts}")


def _validated(query: ListNodes) -> ListNodes:
    try:
        return msgspec.convert(msgspec.to_builtins(query), ListNodes)
    except msgspec.ValidationError as error:
        raise CliError(f"invalid filter: {error}", USAGE_EXIT_CODE) from None


async def _all_nodes(nc: Client, settings: BusSettings, query: ListNodes) -> list[Node]:
    nodes: list[Node] = []
    page_query = query
    while True:
        page = await request(
            nc, page_query, NodePage, namespace=settings.namespace, timeout=REQUEST_TIMEOUT_S
        )
        nodes.extend(page.nodes)
        if page.next_after is None:
            return nodes
        page_query = msgspec.structs.replace(page_query, after=page.next_after)


def nodes(
    *,
    site: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
    rack: Annotated[str | None, typer.Option("--rack", help="Only this rack.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Only this accelerator model (B200, GB200, ...).")
    ] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Only this admin state (available, failed, ...).")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only nodes dedicated to it.")
    ] = None,
    shared: Annotated[bool, typer.Option("--shared", help="Only the shared pool.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per node.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """List the factory's nodes."""
    with exit_on_error("nodes"):
        query = _validated(
            ListNodes(
                site_id=site,
                rack_id=rack,
                model=model,  # type: ignore[arg-type]
                state=state,  # type: ignore[arg-type]
                tenant=tenant,
                shared_only=shared,
                limit=500,
            )
        )
        settings = resolve_settings(nats_url)
        found = _run(settings, lambda nc: _all_nodes(nc, settings, query))
        if as_json:
            for node in found:
                typer.echo(_json_encoder.encode(node).decode())
            return
        _print_table(found)


def _print_table(found: list[Node]) -> None:
    from rich.table import Table

    table = Table(title=f"{len(found)} nodes", title_justify="left")
    for column in ("node", "site", "rack", "model", "accel", "state", "tenant", "reason"):
        table.add_column(column, justify="right" if column == "accel" else "left")
    for node in found:
        table.add_row(
            node.node_id,
            node.site_id,
            node.rack_id,
            node.model,
            f"{node.accelerator_count}x{node.accelerator_memory_gib}G",
            node.state,
            node.tenant or "-",
            node.state_reason if node.state != "available" else "",
        )
    stdout_console().print(table)


def _state_command(command_type: type[NodeStateCommand], verb: str) -> Callable[..., None]:
    def change(
        node_id: Annotated[str, typer.Argument(metavar="ID", help="The node id.")],
        *,
        reason: Annotated[str, typer.Option("--reason", help="Why (recorded with the change).")],
        nats_url: NatsUrl = None,
    ) -> None:
        with exit_on_error(f"node {verb}"):
            try:
                command = msgspec.convert(
                    {"node_id": node_id, "reason": reason, "actor": caller()}, command_type
                )
            except msgspec.ValidationError as error:
                raise CliError(f"invalid {verb} request: {error}", USAGE_EXIT_CODE) from None
            result = _ask(resolve_settings(nats_url), command, NodeStateResult)
            if result.changed:
                stdout_console().print(f"{node_id}: {result.previous_state} -> {result.state}")
            else:
                stdout_console().print(f"{node_id}: already {result.state}; nothing changed")

    change.__doc__ = f"{command_type.__doc__}"
    return change


STATE_VERBS: dict[str, type[NodeStateCommand]] = {
    "cordon": CordonNode,
    "drain": DrainNode,
    "uncordon": UncordonNode,
    "maintenance": StartNodeMaintenance,
    "retire": RetireNode,
}
for _verb, _command in STATE_VERBS.items():
    node_app.command(_verb)(_state_command(_command, _verb))
