"""``aifactory keys`` against a running keys service, and audit tampering detected by ``audit verify``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from sqlalchemy import text

from aifactory.bus.settings import BusSettings
from aifactory.contracts.keys.v1 import (
    AuditPage,
    AuditRecord,
    Caller,
    CreateKey,
    DataKey,
    GenerateDataKey,
    KeyDescription,
    ListAuditRecords,
)
from aifactory.keys.app import KeysService
from aifactory.store.store import Store
from aifactory.testing.waiting import wait_until

pytestmark = pytest.mark.integration

ACME = Caller(principal="tenant:acme", site="fra-1")
OPERATOR = Caller(principal="operator:alice", site="hq")


async def aifactory(bus_settings: BusSettings, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``aifactory ARGS`` in a subprocess (off the event loop, so the service keeps serving)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIFACTORY_", "NATS_URL"))}
    env.update(
        AIFACTORY_NATS_URL=bus_settings.nats_url,
        AIFACTORY_SUBJECT_PREFIX=bus_settings.namespace.prefix,
    )
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "aifactory.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_cli_manages_a_key_through_its_life(
    keys_service: KeysService, bus_settings: BusSettings
) -> None:
    """create, list, rotate, revoke and destroy through the CLI change the key as the service reports it."""
    created = await aifactory(
        bus_settings,
        "keys",
        "create",
        "acme",
        "datasets",
        "--allow-site",
        "fra-1",
        "--rotation-period",
        "90d",
    )
    assert created.returncode == 0, created.stderr
    assert "acme/datasets state=enabled version=1" in created.stdout
    rotated = await aifactory(bus_settings, "keys", "rotate", "acme", "datasets")
    assert "version=2" in rotated.stdout
    listed = await aifactory(bus_settings, "keys", "list", "acme")
    assert "acme/datasets state=enabled version=2" in listed.stdout
    revoked = await aifactory(
        bus_settings, "keys", "revoke", "acme", "datasets", "--reason", "offboarding"
    )
    assert "state=revoked" in revoked.stdout
    early = await aifactory(bus_settings, "keys", "destroy", "acme", "datasets", "--execute")
    assert early.returncode == 1
    assert "refused (invalid_transition)" in early.stderr
    scheduled = await aifactory(
        bus_settings, "keys", "destroy", "acme", "datasets", "--waiting-period", "0s"
    )
    assert "state=destruction_scheduled" in scheduled.stdout
    destroyed = await aifactory(bus_settings, "keys", "destroy", "acme", "datasets", "--execute")
    assert "state=destroyed" in destroyed.stdout, destroyed.stderr
    cross = await aifactory(bus_settings, "keys", "list", "acme", "--as", "tenant:globex")
    assert cross.returncode == 1
    assert "refused (cross_tenant)" in cross.stderr


async def _chain_with_records(call: Callable[..., Any], create_acme: CreateKey) -> None:
    await call(create_acme, KeyDescription)
    for _ in range(4):
        await call(GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME), DataKey)


async def _rows(store: Store) -> dict[int, bytes]:
    async with store.session() as session:
        rows = (
            await session.exec(text("SELECT seq, record FROM keys_audit WHERE chain = 'acme'"))
        ).all()  # type: ignore[call-overload]
    return {int(seq): bytes(record) for seq, record in rows}


async def _tamper(store: Store, how: str) -> None:
    rows = await _rows(store)
    async with store.session() as session, session.begin():
        if how == "edit":
            record = msgspec.json.decode(rows[3], type=AuditRecord)
            forged = msgspec.json.encode(
                msgspec.structs.replace(record, principal="tenant:innocent")
            )
            await session.exec(
                text(
                    "UPDATE keys_audit SET record = :r WHERE chain = 'acme' AND seq = 3"
                ).bindparams(r=forged)
            )  # type: ignore[call-overload]
        elif how == "remove":
            await session.exec(text("DELETE FROM keys_audit WHERE chain = 'acme' AND seq = 2"))  # type: ignore[call-overload]
        else:
            for seq, other in ((2, 3), (3, 2)):
                await session.exec(
                    text(
                        "UPDATE keys_audit SET record = :r WHERE chain = 'acme' AND seq = :s"
                    ).bindparams(r=rows[other], s=seq)
                )  # type: ignore[call-overload]


@pytest.mark.parametrize("how", ["edit", "remove", "reorder"])
async def test_audit_verify_detects_tampering(
    keys_service: KeysService,
    call: Callable[..., Any],
    create_acme: CreateKey,
    bus_settings: BusSettings,
    how: str,
) -> None:
    """``keys audit verify`` passes on an intact chain and exits 1 naming the record once one is edited, removed or reordered."""
    await _chain_with_records(call, create_acme)
    intact = await aifactory(bus_settings, "keys", "audit", "verify", "acme")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "records intact" in intact.stdout
    await _tamper(keys_service.store, how)
    broken = await aifactory(bus_settings, "keys", "audit", "verify", "acme")
    assert broken.returncode == 1
    assert "BROKEN" in broken.stderr
    assert "record 3" in broken.stdout


async def test_audit_verify_against_stream_catches_a_rewritten_chain(
    keys_service: KeysService,
    call: Callable[..., Any],
    create_acme: CreateKey,
    bus_settings: BusSettings,
) -> None:
    """A chain re-sealed after an edit still links, but differs from the copy published on NATS."""
    from aifactory.contracts.keys.audit_chain import seal

    await _chain_with_records(call, create_acme)
    page = await call(ListAuditRecords(tenant="acme", caller=OPERATOR), AuditPage)
    head = page.head_seq
    await wait_until(
        lambda: aifactory(bus_settings, "keys", "audit", "verify", "acme", "--against-stream"),
        lambda result: result.returncode == 0,
        what="the published chain to catch up",
    )
    # Rewrite from record 2 on: edit it, then re-seal it and every later record.
    rows = await _rows(keys_service.store)
    records = [msgspec.json.decode(rows[s], type=AuditRecord) for s in sorted(rows)]
    previous = records[0].record_hash
    rewritten = []
    for record in records[1:]:
        changed = msgspec.structs.replace(
            record, prev_hash=previous, site="elsewhere" if record.seq == 2 else record.site
        )
        sealed = seal(changed)
        rewritten.append(sealed)
        previous = sealed.record_hash
    async with keys_service.store.session() as session, session.begin():
        for record in rewritten:
            await session.exec(  # type: ignore[call-overload]
                text(
                    "UPDATE keys_audit SET record = :r, record_hash = :h WHERE chain = 'acme' AND seq = :s"
                ).bindparams(r=msgspec.json.encode(record), h=record.record_hash, s=record.seq)
            )
    keys_service.custodian.trail.rolled_back()  # the service re-reads its head, as after a restart
    alone = await aifactory(bus_settings, "keys", "audit", "verify", "acme")
    assert alone.returncode == 0, (
        "a consistently re-sealed chain links (this is why the stream copy matters)"
    )
    against = await aifactory(bus_settings, "keys", "audit", "verify", "acme", "--against-stream")
    assert against.returncode == 1
    assert "record 2: differs from the published copy" in against.stdout
    assert head >= 5
