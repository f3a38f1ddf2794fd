"""``aifactory keys``: the master key, tenant key rings and the audit chain.

``init`` writes a new master key file locally (mode 0600, never overwritten); every
other command talks to the keys service over NATS with the keys contracts, as the
operator principal given by ``--as`` (default ``operator:cli``) at ``--site``.
``audit verify`` reads a tenant's whole audit chain from the service and checks it
link by link with ``aifactory.contracts.keys.audit_chain`` (an edited, removed or
reordered record fails it); ``--against-stream`` also compares it with the copy
published on the FACTORY_KEYS stream, which catches a chain rewritten from some
record on or cut short. Exit status: 0 ok, 1 refused or chain broken, 2 usage or
NATS unreachable.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import typer
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import BusSettings
from aifactory.cli.connection import connect
from aifactory.cli.console import USAGE_EXIT_CODE, CliError, exit_on_error, stdout_console
from aifactory.cli.durations import InvalidSince, parse_duration
from aifactory.cli.master_key import write_master_key
from aifactory.cli.settings import resolve_settings
from aifactory.contracts.base import Contract
from aifactory.contracts.keys.audit_chain import verify_chain
from aifactory.contracts.keys.v1 import (
    AuditPage,
    AuditRecord,
    AuditRecordsAppended,
    Caller,
    CreateKey,
    DestroyKey,
    KeyDescription,
    KeyList,
    KeyPolicy,
    ListAuditRecords,
    ListKeys,
    RevokeKey,
    RotateKey,
    ScheduleKeyDestruction,
)
from aifactory.contracts.registry import spec_of

keys_app = typer.Typer(
    help="Key custody: master key, tenant keys, audit chain.", no_args_is_help=True
)
audit_app = typer.Typer(help="The tenant audit hash chains.", no_args_is_help=True)
keys_app.add_typer(audit_app, name="audit")

R = TypeVar("R", bound=Contract)

NatsOption = Annotated[
    str | None,
    typer.Option("--nats-url", help="NATS URL (default: AIFACTORY_NATS_URL, NATS_URL)."),
]
AsOption = Annotated[
    str, typer.Option("--as", help="Caller principal (operator:<name> or tenant:<id>).")
]
SiteOption = Annotated[
    str, typer.Option("--site", envvar="AIFACTORY_SITE", help="The site this call comes from.")
]
TenantArg = Annotated[str, typer.Argument(help="Tenant id.")]
KeyArg = Annotated[str, typer.Argument(help="Key id within the tenant.")]


def master_key_path(explicit: Path | None) -> Path:
    """Where the master key goes: --path, AIFACTORY_KEYS_MASTER_KEY_FILE, or var/keys/master.key."""
    if explicit is not None:
        return explicit
    if configured := os.environ.get("AIFACTORY_KEYS_MASTER_KEY_FILE"):
        return Path(configured)
    return Path(os.environ.get("AIFACTORY_VAR_DIR", "var")) / "keys" / "master.key"


@keys_app.command("init")
def init(
    path: Annotated[
        Path | None, typer.Option("--path", help="Where to write the master key file.")
    ] = None,
) -> None:
    """Create the master key file (32 random bytes, base64, mode 0600) the service starts with."""
    with exit_on_error("keys init"):
        target = master_key_path(path)
        try:
            write_master_key(target)
        except FileExistsError:
            raise CliError(
                f"{target} already exists; a master key is never overwritten (keys wrapped "
                "under it would become unrecoverable)"
            ) from None
        stdout_console().print(f"wrote master key {target} (mode 0600); back it up offline")


def _caller(principal: str, site: str) -> Caller:
    try:
        return msgspec.convert({"principal": principal, "site": site}, Caller)
    except msgspec.ValidationError as error:
        raise CliError(f"--as/--site: {error}", USAGE_EXIT_CODE) from None


def _command(contract: type[R], **fields: object) -> R:
    """The contract built from ``fields`` and validated (a Struct's constructor does not check)."""
    plain = {
        name: msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value
        for name, value in fields.items()
    }
    try:
        return msgspec.convert(plain, contract)
    except msgspec.ValidationError as error:
        raise CliError(f"invalid argument: {error}", USAGE_EXIT_CODE) from None


async def _with_nats(settings: BusSettings, work: Callable[[Client], Awaitable[None]]) -> None:
    nc = await connect(settings.nats_url)
    try:
        await work(nc)
    finally:
        await nc.drain()


async def _ask(nc: Client, settings: BusSettings, command: Contract, reply: type[R]) -> R:
    try:
        return await request(nc, command, reply, namespace=settings.namespace, timeout=10)
    except CommandFailed as failed:
        reason = failed.error.details.get("reason", failed.error.code)
        raise CliError(f"refused ({reason}): {failed.error.message}") from None
    except ServiceUnavailable as error:
        raise CliError(f"the keys service does not answer: {error}", USAGE_EXIT_CODE) from None


def _run(settings: BusSettings, work: Callable[[Client], Awaitable[None]]) -> None:
    asyncio.run(_with_nats(settings, work))


def _show(description: KeyDescription) -> None:
    policy = description.policy
    where = ",".join(policy.allowed_sites + policy.allowed_jurisdictions)
    extra = (
        f" destroy_after={description.destroy_after.isoformat()}"
        if description.destroy_after
        else ""
    )
    stdout_console().print(
        f"{description.tenant}/{description.key_id} state={description.state} "
        f"version={description.latest_version} min_decryption={description.min_decryption_version} "
        f"sites={where} callers={','.join(policy.allowed_callers)}{extra}"
    )


def _seconds(text: str, option: str) -> int:
    try:
        return int(parse_duration(text).total_seconds())
    except InvalidSince:
        raise CliError(
            f"{option} takes a duration like 90d, 12h or 0s; got {text!r}", USAGE_EXIT_CODE
        ) from None


@keys_app.command("create")
def create(
    tenant: TenantArg,
    key_id: KeyArg,
    *,
    site: Annotated[
        list[str], typer.Option("--allow-site", help="Allowed site (repeatable).")
    ] = [],  # noqa: B006 - typer reads the default
    jurisdiction: Annotated[
        list[str], typer.Option("--allow-jurisdiction", help="Allowed jurisdiction, e.g. DE.")
    ] = [],  # noqa: B006 - typer reads the default
    allowed_caller: Annotated[
        list[str], typer.Option("--allow-caller", help="Allowed principal (default: the tenant).")
    ] = [],  # noqa: B006 - typer reads the default
    rotation_period: Annotated[
        str, typer.Option("--rotation-period", help="Rotate automatically this often (0 = never).")
    ] = "0s",
    principal: AsOption = "operator:cli",
    caller_site: SiteOption = "local",
    nats_url: NatsOption = None,
) -> None:
    """Create a tenant key ring (idempotent for the same policy)."""
    with exit_on_error("keys create"):
        policy = _command(
            KeyPolicy,
            allowed_sites=site,
            allowed_jurisdictions=jurisdiction,
            allowed_callers=allowed_caller,
            rotation_period_s=_seconds(rotation_period, "--rotation-period"),
        )
        command = _command(
            CreateKey,
            tenant=tenant,
            key_id=key_id,
            policy=policy,
            caller=_caller(principal, caller_site),
        )
        settings = resolve_settings(nats_url)

        async def work(nc: Client) -> None:
            _show(await _ask(nc, settings, command, KeyDescription))

        _run(settings, work)


@keys_app.command("list")
def list_keys(
    tenant: TenantArg,
    *,
    principal: AsOption = "operator:cli",
    caller_site: SiteOption = "local",
    nats_url: NatsOption = None,
) -> None:
    """List a tenant's key rings."""
    with exit_on_error("keys list"):
        command = _command(ListKeys, tenant=tenant, caller=_caller(principal, caller_site))
        settings = resolve_settings(nats_url)

        async def work(nc: Client) -> None:
            listing = await _ask(nc, settings, command, KeyList)
            for description in listing.keys:
                _show(description)
            if not listing.keys:
                stdout_console().print(f"tenant {tenant} has no keys")

        _run(settings, work)


@keys_app.command("rotate")
def rotate(
    tenant: TenantArg,
    key_id: KeyArg,
    *,
    principal: AsOption = "operator:cli",
    caller_site: SiteOption = "local",
    nats_url: NatsOption = None,
) -> None:
    """Add a new version to a key; new encryptions use it."""
    with exit_on_error("keys rotate"):
        command = _command(
            RotateKey, tenant=tenant, key_id=key_id, caller=_caller(principal, caller_site)
        )
        settings = resolve_settings(nats_url)

        async def work(nc: Client) -> None:
            _show(await _ask(nc, settings, command, KeyDescription))

        _run(settings, work)


@keys_app.command("revoke")
def revoke(
    tenant: TenantArg,
    key_id: KeyArg,
    *,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the event).")] = "",
    principal: AsOption = "operator:cli",
    caller_site: SiteOption = "local",
    nats_url: NatsOption = None,
) -> None:
    """Revoke a key: every use is refused from now on, for good."""
    with exit_on_error("keys revoke"):
        command = _command(
            RevokeKey,
            tenant=tenant,
            key_id=key_id,
            reason=reason,
            caller=_caller(principal, caller_site),
        )
        settings = resolve_settings(nats_url)

        async def work(nc: Client) -> None:
            _show(await _ask(nc, settings, command, KeyDescription))

        _run(settings, work)


@keys_app.command("destroy")
def destroy(
    tenant: TenantArg,
    key_id: KeyArg,
    *,
    waiting_period: Annotated[
        str, typer.Option("--waiting-period", help="Schedule destruction after this long.")
    ] = "7d",
    execute: Annotated[
        bool,
        typer.Option("--execute", help="Destroy now a key whose waiting period has ended."),
    ] = False,
    principal: AsOption = "operator:cli",
    caller_site: SiteOption = "local",
    nats_url: NatsOption = None,
) -> None:
    """Schedule a key's destruction, or (--execute) destroy it once the wait is over."""
    with exit_on_error("keys destroy"):
        caller = _caller(principal, caller_site)
        command: Contract = (
            _command(DestroyKey, tenant=tenant, key_id=key_id, caller=caller)
            if execute
            else _command(
                ScheduleKeyDestruction,
                tenant=tenant,
                key_id=key_id,
                caller=caller,
                waiting_period_s=_seconds(waiting_period, "--waiting-period"),
            )
        )
        settings = resolve_settings(nats_url)

        async def work(nc: Client) -> None:
            _show(await _ask(nc, settings, command, KeyDescription))

        _run(settings, work)


async def read_chain(
    nc: Client, settings: BusSettings, tenant: str, caller: Caller
) -> tuple[list[AuditRecord], int]:
    """Every record of ``tenant``'s chain, from the service, and the head it reported."""
    records: list[AuditRecord] = []
    head = 0
    while True:
        after = records[-1].seq if records else 0
        page = await _ask(
            nc,
            settings,
            ListAuditRecords(tenant=tenant, caller=caller, after_seq=after, limit=1000),
            AuditPage,
        )
        records.extend(page.records)
        head = max(head, page.head_seq)
        if len(page.records) < 1000:
            return records, head


async def read_published_chain(
    nc: Client, settings: BusSettings, tenant: str
) -> dict[int, AuditRecord]:
    """The records of ``tenant``'s chain as published on the FACTORY_KEYS stream."""
    js = nc.jetstream()
    subject = settings.namespace.subject(spec_of(AuditRecordsAppended).subject(tenant))
    published: dict[int, AuditRecord] = {}
    subscription = await js.subscribe(
        subject,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        while True:
            try:
                msg = await subscription.next_msg(timeout=1.0)
            except TimeoutError:
                return published
            for record in msgspec.json.decode(msg.data, type=AuditRecordsAppended).records:
                published[record.seq] = record
            if msg.metadata.num_pending == 0:
                return published
    finally:
        await subscription.unsubscribe()


@audit_app.command("verify")
def verify(
    tenant: TenantArg,
    *,
    against_stream: Annotated[
        bool,
        typer.Option("--against-stream", help="Also compare with the records published on NATS."),
    ] = False,
    principal: AsOption = "operator:cli",
    caller_site: SiteOption = "local",
    nats_url: NatsOption = None,
) -> None:
    """Verify a tenant's audit hash chain; exit 1 if a record was edited, removed or reordered."""
    with exit_on_error("keys audit verify"):
        caller = _caller(principal, caller_site)
        _command(ListAuditRecords, tenant=tenant, caller=caller)  # validates the tenant id
        settings = resolve_settings(nats_url)
        problems: list[str] = []
        count = [0]

        async def work(nc: Client) -> None:
            records, head = await read_chain(nc, settings, tenant, caller)
            count[0] = len(records)
            problems.extend(str(problem) for problem in verify_chain(records))
            if records and records[-1].seq < head:
                problems.append(f"the chain ends at {records[-1].seq} but its head is {head}")
            if against_stream:
                published = await read_published_chain(nc, settings, tenant)
                held = {record.seq: record for record in records}
                for seq, record in sorted(published.items()):
                    if seq > head:
                        break  # appended after the chain was read (this very command's reads)
                    if seq not in held:
                        problems.append(f"record {seq}: published but missing from the service")
                    elif held[seq].record_hash != record.record_hash:
                        problems.append(f"record {seq}: differs from the published copy")

        _run(settings, work)
        if problems:
            for problem in problems:
                stdout_console().print(f"- {problem}")
            raise CliError(f"audit chain of {tenant} is BROKEN: {len(problems)} problem(s)")
        stdout_console().print(f"audit chain of {tenant} verified: {count[0]} records intact")
