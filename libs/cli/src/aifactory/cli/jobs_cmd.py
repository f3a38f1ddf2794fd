"""``aifactory submit``, ``jobs``, ``job`` and ``queue``: the scheduler, by NATS.

- ``aifactory submit FILE`` reads a job spec (YAML, one job or a list of jobs), submits
  each (``SubmitJob``) and prints its id and whether it was placed or why it waits; a
  job that can never run is refused with its reason, and submitting the same file
  again returns the same jobs (the client job id is the idempotency key).
- ``aifactory jobs [--tenant T] [--state S] [--json]`` lists jobs (all pages).
- ``aifactory job show ID`` / ``aifactory job cancel ID [--reason TEXT]``.
- ``aifactory queue [--tenant T]`` shows the waiting jobs in service order and why
  each one waits.

Everything goes through the contracts with ``request``; the CLI never imports the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
import yaml
from nats.aio.client import Client

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import BusSettings
from aifactory.cli.connection import connect
from aifactory.cli.console import USAGE_EXIT_CODE, CliError, exit_on_error, stdout_console
from aifactory.cli.inventory_cmd import caller
from aifactory.cli.settings import resolve_settings
from aifactory.contracts.base import Contract
from aifactory.contracts.jobs.v1 import (
    CancelJob,
    ExplainQueue,
    GetJob,
    JobAcceptance,
    JobPage,
    JobSpec,
    JobStatus,
    JobView,
    ListJobs,
    QueueExplanation,
    SubmitJob,
)

R = TypeVar("R", bound=Contract)
T = TypeVar("T")
REQUEST_TIMEOUT_S = 30.0
JOB_STATES = (
    "queued",
    "placed",
    "running",
    "finished",
    "failed",
    "cancelled",
    "rejected",
    "abandoned",
)

job_app = typer.Typer(help="Show or cancel one job.", no_args_is_help=True)
NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", help="NATS URL (default: AIFACTORY_NATS_URL, NATS_URL)."),
]
_json_encoder = msgspec.json.Encoder()


def _failure(error: CommandFailed) -> CliError:
    reason = error.error.details.get("reason")
    suffix = f" [{reason}]" if reason else ""
    return CliError(f"{error.error.code}: {error.error.message}{suffix}")


def _run(settings: BusSettings, conversation: Callable[[Client], Awaitable[T]]) -> T:
    async def talk() -> T:
        nc = await connect(settings.nats_url)
        try:
            return await conversation(nc)
        except CommandFailed as error:
            raise _failure(error) from None
        except ServiceUnavailable as error:
            raise CliError(
                f"the scheduling service is not answering ({error}): is `aifactory up` running?",
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


def read_job_file(path: Path) -> list[JobSpec]:
    """The job specs in a YAML file (a mapping, a list, or ``jobs: [...]``); CliError if invalid."""
    try:
        loaded: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}", USAGE_EXIT_CODE) from None
    except yaml.YAMLError as error:
        raise CliError(f"{path} is not valid YAML: {error}", USAGE_EXIT_CODE) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("jobs"), list):
        loaded = loaded["jobs"]
    items = loaded if isinstance(loaded, list) else [loaded]
    specs = []
    for number, item in enumerate(items, start=1):
        try:
            specs.append(msgspec.convert(item, JobSpec))
        except msgspec.ValidationError as error:
            where = f" (job {number})" if len(items) > 1 else ""
            raise CliError(f"{path}{where}: {error}", USAGE_EXIT_CODE) from None
    return specs


def submit(
    file: Annotated[Path, typer.Argument(help="The job spec (YAML): one job or a list of jobs.")],
    *,
    nats_url: NatsUrl = None,
) -> None:
    """Submit jobs; prints each job's id and whether it was placed or why it waits."""
    with exit_on_error("submit"):
        specs = read_job_file(file)
        settings = resolve_settings(nats_url)

        async def send_all(nc: Client) -> list[JobAcceptance | CommandFailed]:
            replies: list[JobAcceptance | CommandFailed] = []
            for spec in specs:
                try:
                    replies.append(
                        await request(
                            nc,
                            SubmitJob(job=spec),
                            JobAcceptance,
                            namespace=settings.namespace,
                            tenant=spec.tenant,
                            timeout=REQUEST_TIMEOUT_S,
                        )
                    )
                except CommandFailed as refused:
                    replies.append(refused)
            return replies

        replies = _run(settings, send_all)
        out = stdout_console()
        refused = 0
        for spec, reply in zip(specs, replies, strict=True):
            if isinstance(reply, CommandFailed):
                refused += 1
                reason = reply.error.details.get("reason", reply.error.code)
                out.print(f"{spec.client_job_id}: rejected [{reason}] {reply.error.message}")
                continue
            repeat = "" if reply.created else " (already submitted)"
            why = f" [{reply.reason}] {reply.message}" if reply.state == "queued" else ""
            out.print(f"{spec.client_job_id}: {reply.job_id} {reply.state}{repeat}{why}")
        if refused:
            raise typer.Exit(1)


async def _all_jobs(nc: Client, settings: BusSettings, query: ListJobs) -> list[JobView]:
    found: list[JobView] = []
    while True:
        page = await request(
            nc, query, JobPage, namespace=settings.namespace, timeout=REQUEST_TIMEOUT_S
        )
        found.extend(page.jobs)
        if page.next_after is None:
            return found
        query = msgspec.structs.replace(query, after=page.next_after)


def jobs(
    *,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's jobs.")] = None,
    state: Annotated[
        str | None,
        typer.Option("--state", help=f"Only jobs in this state ({', '.join(JOB_STATES)})."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per job.")] = False,
    nats_url: NatsUrl = None,
) -> None:
    """List jobs with their state, placement and reason."""
    with exit_on_error("jobs"):
        if state is not None and state not in JOB_STATES:
            raise CliError(
                f"unknown state {state!r}: one of {', '.join(JOB_STATES)}", USAGE_EXIT_CODE
            )
        try:
            query = msgspec.convert({"tenant": tenant, "state": state, "limit": 500}, ListJobs)
        except msgspec.ValidationError as error:
            raise CliError(f"invalid filter: {error}", USAGE_EXIT_CODE) from None
        settings = resolve_settings(nats_url)
        found = _run(settings, lambda nc: _all_jobs(nc, settings, query))
        if as_json:
            for view in found:
                typer.echo(_json_encoder.encode(view).decode())
            return
        from rich.table import Table

        table = Table(title=f"{len(found)} jobs", title_justify="left")
        for column in (
            "job",
            "tenant",
            "name",
            "state",
            "priority",
            "accel",
            "placement",
            "reason",
        ):
            table.add_column(column)
        for view in found:
            nodes = ",".join(a.node_id for a in view.allocations)
            table.add_row(
                view.job_id,
                view.spec.tenant,
                view.spec.name,
                view.state,
                view.spec.priority,
                f"{view.spec.accelerators}/{view.spec.accelerators_per_node}",
                f"{view.model}@{view.site_id}: {nodes}" if nodes else "",
                f"{view.reason} {view.message}".strip(),
            )
        stdout_console().print(table)


@job_app.command("show")
def show(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    *,
    nats_url: NatsUrl = None,
) -> None:
    """Print one job as JSON."""
    with exit_on_error("job show"):
        view = _ask(resolve_settings(nats_url), _validated(GetJob, job_id=job_id), JobView)
        typer.echo(_json_encoder.encode(view).decode())


@job_app.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job id.")],
    *,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded with the event).")] = "",
    nats_url: NatsUrl = None,
) -> None:
    """Cancel a job (queued, placed or running); its accelerators are freed."""
    with exit_on_error("job cancel"):
        command = _validated(CancelJob, job_id=job_id, reason=reason, actor=caller())
        status = _ask(resolve_settings(nats_url), command, JobStatus)
        out = stdout_console()
        if status.changed:
            out.print(f"{job_id}: {status.previous_state} -> {status.state}")
        else:
            out.print(f"{job_id}: already {status.state}; nothing changed")


def _validated(kind: type[R], **fields: Any) -> R:
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as error:
        raise CliError(f"invalid request: {error}", USAGE_EXIT_CODE) from None


def queue(
    *,
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's jobs.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many jobs (1-1000).")] = 200,
    nats_url: NatsUrl = None,
) -> None:
    """The waiting jobs in service order and why each one waits."""
    with exit_on_error("queue"):
        query = _validated(ExplainQueue, tenant=tenant, limit=limit)
        explained = _ask(resolve_settings(nats_url), query, QueueExplanation)
        out = stdout_console()
        if not explained.entries:
            out.print("no job is waiting")
            return
        out.print(f"{explained.total} waiting, in the order they will be served:")
        for entry in explained.entries:
            since = entry.waiting_since.strftime("%Y-%m-%d %H:%M:%S")
            out.print(
                f"{entry.position:>4}. {entry.job_id} {entry.tenant} {entry.priority} "
                f"{entry.accelerators}x{'/'.join(entry.models)} waiting since {since}: "
                f"{entry.reason}: {entry.message}"
            )
