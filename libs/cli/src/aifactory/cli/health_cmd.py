"""``aifactory health``, ``alerts``, ``silence`` and ``agent``: node health, by NATS.

- ``aifactory health [--state VERDICT] [--site S] [--json]`` lists nodes with their
  verdict, recommended action and reasons, and a summary (counts per verdict, the
  telemetry ingest's counters).
- ``aifactory alerts [--all] [--node ID] [--json]`` lists open alerts grouped per
  rack (``--all``: the history, resolved alerts included) and the active silences.
- ``aifactory silence NODE --for 2h --reason TEXT [--rule RULE]`` silences a node's
  alerts (all, or one rule) for a while; the caller is recorded as the actor.
- ``aifactory agent --node ID [--interval 1s] [--simulate PROFILE] ...`` runs the node
  agent (``python -m aifactory.agent``, options passed through) in this process.

Everything goes through the contracts with ``request``; the CLI never imports the
health service or the agent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import msgspec
import typer
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import BusSettings
from aifactory.cli.connection import connect
from aifactory.cli.console import USAGE_EXIT_CODE, CliError, exit_on_error, stdout_console
from aifactory.cli.durations import InvalidSince, parse_duration
from aifactory.cli.inventory_cmd import caller
from aifactory.cli.services import is_runnable
from aifactory.cli.settings import resolve_settings
from aifactory.contracts.base import Contract
from aifactory.contracts.health.v1 import (
    AlertReport,
    ListAlerts,
    ListNodeHealth,
    NodeHealthPage,
    NodeHealthView,
    SilenceNode,
    SilenceView,
)

R = TypeVar("R", bound=Contract)
T = TypeVar("T")
REQUEST_TIMEOUT_S = 30.0
VERDICTS = ("healthy", "degraded", "failed", "unreachable")

NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", help="NATS URL (default: AIFACTORY_NATS_URL, NATS_URL)."),
]
_json_encoder = msgspec.json.Encoder()


def _run(settings: BusSettings, conversation: Callable[[Client], Awaitable[T]]) -> T:
    async def talk() -> T:
        nc = await connect(settings.nats_url)
        try:
            return await conversation(nc)
        except CommandFailed as error:
            raise CliError(f"{error.error.code}: {error.error.message}") from None
        except ServiceUnavailable as error:
            raise CliError(
                f"the health service is not answering ({error}): is `aifactory up` running?",
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


def _ago(moment: dt.datetime | None, now: dt.datetime) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


async def _all_health(nc: Client, settings: BusSettings, query: ListNodeHealth) -> NodeHealthPage:
    nodes: list[NodeHealthView] = []
    page_query = query
    while True:
        page = await request(
            nc, page_query, NodeHealthPage, namespace=settings.namespace, timeout=REQUEST_TIMEOUT_S
        )
        nodes.extend(page.nodes)
        if page.next_after is None:
            return msgspec.structs.replace(page, nodes=nodes)
        page_query = msgspec.structs.replace(page_query, after=page.next_after)


def health(
    *,
    state: Annotated[
        str | None,
        typer.Option("--state", help="Only nodes with this verdict: " + ", ".join(VERDICTS)),
    ] = None,
    site: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per node.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Show each node's health verdict, recommended action and reasons."""
    with exit_on_error("health"):
        if state is not None and state not in VERDICTS:
            raise CliError(
                f"--state must be one of {', '.join(VERDICTS)}, got {state!r}", USAGE_EXIT_CODE
            )
        try:
            query = msgspec.convert({"verdict": state, "site_id": site}, ListNodeHealth)
        except msgspec.ValidationError as error:
            raise CliError(f"invalid filter: {error}", USAGE_EXIT_CODE) from None
        settings = resolve_settings(nats_url)
        page = _run(settings, lambda nc: _all_health(nc, settings, query))
        if as_json:
            for node in page.nodes:
                typer.echo(_json_encoder.encode(node).decode())
            return
        _print_health(page)


def _print_health(page: NodeHealthPage) -> None:
    from rich.table import Table

    now = dt.datetime.now(dt.UTC)
    table = Table(title=f"{len(page.nodes)} nodes", title_justify="left")
    for column in ("node", "site", "rack", "verdict", "action", "since", "heartbeat", "reasons"):
        table.add_column(column)
    for node in page.nodes:
        table.add_row(
            node.node_id,
            node.site_id,
            node.rack_id or "-",
            node.verdict,
            node.recommended_action,
            _ago(node.first_seen, now) if node.verdict != "healthy" else "",
            _ago(node.last_heartbeat_at, now),
            "; ".join(
                f"{r.code} {r.component}" if r.component and r.component != "node" else r.code
                for r in node.reasons
            ),
        )
    out = stdout_console()
    out.print(table)
    counts = ", ".join(f"{v} {page.counts.get(v, 0)}" for v in VERDICTS)  # type: ignore[call-overload]
    out.print(f"verdicts: {counts}")
    ingest = page.ingest
    out.print(
        f"telemetry: {ingest.received} received, {ingest.applied} applied, "
        f"{ingest.garbage} garbage, {ingest.unknown_node} from unknown nodes"
        + (f" ({', '.join(ingest.unknown_node_ids)})" if ingest.unknown_node_ids else "")
        + (f", {ingest.overflow} dropped (overload)" if ingest.overflow else "")
    )


def alerts(
    *,
    show_all: Annotated[
        bool, typer.Option("--all", help="The history too: resolved alerts included.")
    ] = False,
    node: Annotated[str | None, typer.Option("--node", help="Only this node's alerts.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """Show open alerts grouped per rack (--all: the alert history), and active silences."""
    with exit_on_error("alerts"):
        try:
            query = msgspec.convert(
                {"include_resolved": show_all, "node_id": node, "limit": 1000}, ListAlerts
            )
        except msgspec.ValidationError as error:
            raise CliError(f"invalid filter: {error}", USAGE_EXIT_CODE) from None
        report = _ask(resolve_settings(nats_url), query, AlertReport)
        if as_json:
            typer.echo(_json_encoder.encode(report).decode())
            return
        _print_alerts(report, show_all=show_all)


def _print_alerts(report: AlertReport, *, show_all: bool) -> None:
    out = stdout_console()
    now = dt.datetime.now(dt.UTC)
    kind = "alerts" if show_all else "open alerts"
    out.print(f"{report.total} {kind} in {len(report.groups)} racks")
    for group in report.groups:
        out.print(f"rack {group.rack_id or '-'} (site {group.site_id}): {len(group.alerts)}")
        for alert in group.alerts:
            flags = []
            if alert.silenced:
                flags.append("silenced")
            if alert.state == "resolved":
                flags.append(f"resolved {_ago(alert.resolved_at, now)}")
            if alert.occurrences > 1:
                flags.append(f"x{alert.occurrences}")
            out.print(
                f"  {alert.severity:<8} {alert.node_id:<16} {alert.rule:<20} "
                f"raised {_ago(alert.raised_at, now):<9} {alert.summary}"
                + (f" [{', '.join(flags)}]" if flags else "")
            )
    for silence in report.silences:
        out.print(
            f"silence {silence.silence_id}: {silence.node_id} {silence.rule or 'all rules'} "
            f"until {silence.ends_at.isoformat(timespec='seconds')} by {silence.actor}: "
            f"{silence.reason}"
        )


def silence(
    node_id: Annotated[str, typer.Argument(metavar="NODE", help="The node whose alerts to hold.")],
    *,
    duration: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 1d (max 30d).")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded with the silence).")],
    rule: Annotated[
        str | None, typer.Option("--rule", help="Only this rule (e.g. thermal_hot).")
    ] = None,
    nats_url: NatsUrl = None,
) -> None:
    """Silence a node's alerts for a while: they are recorded but not announced."""
    with exit_on_error("silence"):
        try:
            seconds = int(parse_duration(duration).total_seconds())
        except InvalidSince:
            raise CliError(
                f"--for takes a duration like 30m, 2h or 1d, got {duration!r}", USAGE_EXIT_CODE
            ) from None
        try:
            command = msgspec.convert(
                {
                    "node_id": node_id,
                    "duration_s": seconds,
                    "reason": reason,
                    "actor": caller(),
                    "rule": rule,
                },
                SilenceNode,
            )
        except msgspec.ValidationError as error:
            raise CliError(f"invalid silence: {error}", USAGE_EXIT_CODE) from None
        view = _ask(resolve_settings(nats_url), command, SilenceView)
        stdout_console().print(
            f"silenced {view.node_id} ({view.rule or 'all rules'}) until "
            f"{view.ends_at.isoformat(timespec='seconds')}: {view.silence_id}"
        )


def agent(
    ctx: typer.Context,
    nats_url: NatsUrl = None,
) -> None:
    """Run the node agent here: --node ID [--interval 1s] [--simulate PROFILE] (see --help)."""
    with exit_on_error("agent"):
        if not is_runnable("aifactory.agent"):
            raise CliError("the node agent (aifactory-agent) is not installed", USAGE_EXIT_CODE)
        env = dict(os.environ)
        if nats_url:
            env["AIFACTORY_NATS_URL"] = nats_url
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "aifactory.agent", *ctx.args], env)  # noqa: S606 - our own module, fixed argv


AGENT_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}
"""``aifactory agent`` passes every option (``--help`` too) to the agent."""
