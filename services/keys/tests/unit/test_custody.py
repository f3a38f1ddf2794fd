"""Key custody use cases through the custodian, on SQLite and PostgreSQL (no NATS)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import msgspec
import pytest
import structlog
from sqlalchemy import text

from aifactory.contracts.base import Contract
from aifactory.contracts.keys.audit_chain import verify_chain
from aifactory.contracts.keys.v1 import (
    AuditPage,
    Caller,
    CreateKey,
    DataKey,
    DataKeyPlaintext,
    Decrypt,
    DecryptDataKey,
    DescribeKey,
    DestroyKey,
    Encrypt,
    GenerateDataKey,
    KeyDescription,
    KeyList,
    KeyPolicy,
    ListAuditRecords,
    ListKeys,
    Opened,
    RevokeKey,
    Rewrap,
    RewrapItem,
    Rewrapped,
    RotateKey,
    ScheduleKeyDestruction,
    Sealed,
    SetMinDecryptionVersion,
)
from aifactory.keys.crypto import MasterKeyRoot
from aifactory.keys.custody import Custodian, Maintenance, MaintenanceReport, Refused
from aifactory.keys.domain import Refusal
from aifactory.keys.material import KeyMaterial
from aifactory.keys.store import KeyRepository
from aifactory.store.store import Store
from aifactory.store.tables import OutboxRecord

ACME = Caller(principal="tenant:acme", site="fra-1")
OPERATOR = Caller(principal="operator:alice", site="hq")

pytestmark = pytest.mark.integration


async def ok(custodian: Custodian, command: Contract, reply_type: type) -> object:
    """Execute ``command`` and return its reply, failing on a refusal."""
    answer = await custodian.execute(command)
    assert isinstance(answer, reply_type), answer
    return answer


async def refused(custodian: Custodian, command: Contract) -> Refused:
    """Execute ``command`` and return its refusal, failing if it was allowed."""
    answer = await custodian.execute(command)
    assert isinstance(answer, Refused), answer
    return answer


async def audit(custodian: Custodian, tenant: str = "acme") -> list:
    """Every committed audit record of ``tenant``'s chain."""
    page = await ok(
        custodian, ListAuditRecords(tenant=tenant, caller=OPERATOR, limit=1000), AuditPage
    )
    return page.records  # type: ignore[attr-defined]


async def test_envelope_round_trip(custodian: Custodian, create_acme: CreateKey) -> None:
    """A generated data key unwraps to the same plaintext, and a sealed payload opens."""
    await ok(custodian, create_acme, KeyDescription)
    data_key = await ok(
        custodian,
        GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME, context="ds-1"),
        DataKey,
    )
    assert isinstance(data_key, DataKey)
    assert len(data_key.plaintext) == 32
    assert data_key.plaintext not in data_key.wrapped
    unwrapped = await ok(
        custodian,
        DecryptDataKey(
            tenant="acme", key_id="datasets", caller=ACME, wrapped=data_key.wrapped, context="ds-1"
        ),
        DataKeyPlaintext,
    )
    assert unwrapped.plaintext == data_key.plaintext  # type: ignore[attr-defined]
    sealed = await ok(
        custodian,
        Encrypt(tenant="acme", key_id="datasets", caller=ACME, plaintext=b"x" * 4096),
        Sealed,
    )
    opened = await ok(
        custodian,
        Decrypt(tenant="acme", key_id="datasets", caller=ACME, ciphertext=sealed.ciphertext),
        Opened,
    )  # type: ignore[attr-defined]
    assert opened.plaintext == b"x" * 4096  # type: ignore[attr-defined]
    wrong_context = await refused(
        custodian,
        DecryptDataKey(
            tenant="acme", key_id="datasets", caller=ACME, wrapped=data_key.wrapped, context="ds-2"
        ),
    )
    assert wrong_context.refusal.reason == "invalid_ciphertext"


async def test_create_is_idempotent_and_refuses_a_different_policy(
    custodian: Custodian, create_acme: CreateKey
) -> None:
    """Creating the same key twice returns it; with another policy it is refused as key_exists."""
    first = await ok(custodian, create_acme, KeyDescription)
    again = await ok(custodian, create_acme, KeyDescription)
    assert again == first
    other = msgspec.structs.replace(create_acme, policy=KeyPolicy(allowed_sites=["iad-1"]))
    assert (await refused(custodian, other)).refusal.reason == "key_exists"


async def test_rotation_and_minimum_decryption_version(
    custodian: Custodian, create_acme: CreateKey
) -> None:
    """After rotation old ciphertexts still decrypt, until the minimum version passes them; rewrap moves them up."""
    await ok(custodian, create_acme, KeyDescription)
    old = await ok(
        custodian, GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME), DataKey
    )
    rotated = await ok(
        custodian, RotateKey(tenant="acme", key_id="datasets", caller=ACME), KeyDescription
    )
    assert rotated.latest_version == 2  # type: ignore[attr-defined]
    new = await ok(
        custodian, GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME), DataKey
    )
    assert (old.version, new.version) == (1, 2)  # type: ignore[attr-defined]
    still = await ok(
        custodian,
        DecryptDataKey(tenant="acme", key_id="datasets", caller=ACME, wrapped=old.wrapped),
        DataKeyPlaintext,
    )  # type: ignore[attr-defined]
    assert still.plaintext == old.plaintext  # type: ignore[attr-defined]
    rewrapped = await ok(
        custodian,
        Rewrap(
            tenant="acme",
            key_id="datasets",
            caller=ACME,
            items=[RewrapItem(ciphertext=old.wrapped)],
        ),
        Rewrapped,
    )  # type: ignore[attr-defined]
    assert rewrapped.version == 2  # type: ignore[attr-defined]
    await ok(
        custodian,
        SetMinDecryptionVersion(
            tenant="acme", key_id="datasets", caller=ACME, min_decryption_version=2
        ),
        KeyDescription,
    )
    below = await refused(
        custodian,
        DecryptDataKey(tenant="acme", key_id="datasets", caller=ACME, wrapped=old.wrapped),
    )  # type: ignore[attr-defined]
    assert below.refusal.reason == "below_min_decryption_version"
    assert below.refusal.code == "conflict"
    moved = await ok(
        custodian,
        DecryptDataKey(
            tenant="acme", key_id="datasets", caller=ACME, wrapped=rewrapped.ciphertexts[0]
        ),
        DataKeyPlaintext,
    )  # type: ignore[attr-defined]
    assert moved.plaintext == old.plaintext  # type: ignore[attr-defined]


async def test_revoke_refuses_every_operation_at_once(
    custodian: Custodian, create_acme: CreateKey
) -> None:
    """Once revoked, generate, decrypt, encrypt, decrypt payload, rewrap and rotate are all refused."""
    await ok(custodian, create_acme, KeyDescription)
    data_key = await ok(
        custodian, GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME), DataKey
    )
    sealed = await ok(
        custodian, Encrypt(tenant="acme", key_id="datasets", caller=ACME, plaintext=b"p"), Sealed
    )
    revoked = await ok(
        custodian,
        RevokeKey(tenant="acme", key_id="datasets", caller=OPERATOR, reason="breach"),
        KeyDescription,
    )
    assert revoked.state == "revoked"  # type: ignore[attr-defined]
    wrapped = data_key.wrapped  # type: ignore[attr-defined]
    for command in (
        GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME),
        DecryptDataKey(tenant="acme", key_id="datasets", caller=ACME, wrapped=wrapped),
        Encrypt(tenant="acme", key_id="datasets", caller=ACME, plaintext=b"p"),
        Decrypt(tenant="acme", key_id="datasets", caller=ACME, ciphertext=sealed.ciphertext),  # type: ignore[attr-defined]
        Rewrap(
            tenant="acme", key_id="datasets", caller=ACME, items=[RewrapItem(ciphertext=wrapped)]
        ),
    ):
        assert (await refused(custodian, command)).refusal.reason == "key_revoked"
    assert (
        await refused(custodian, RotateKey(tenant="acme", key_id="datasets", caller=ACME))
    ).refusal.reason == "invalid_transition"


async def test_destroyed_key_material_is_gone_and_data_unrecoverable(
    custodian: Custodian, create_acme: CreateKey, store: Store, root: MasterKeyRoot
) -> None:
    """After destruction no wrapped material is left, and even the master key cannot open the old ciphertext."""
    await ok(custodian, create_acme, KeyDescription)
    data_key = await ok(
        custodian, GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME), DataKey
    )
    assert (
        await refused(custodian, DestroyKey(tenant="acme", key_id="datasets", caller=ACME))
    ).refusal.reason == "invalid_transition"
    await ok(
        custodian,
        ScheduleKeyDestruction(tenant="acme", key_id="datasets", caller=ACME, waiting_period_s=0),
        KeyDescription,
    )
    destroyed = await ok(
        custodian, DestroyKey(tenant="acme", key_id="datasets", caller=ACME), KeyDescription
    )
    assert destroyed.state == "destroyed"  # type: ignore[attr-defined]
    async with store.session() as session:
        left = (
            await session.exec(text("SELECT count(*) FROM keys_versions WHERE wrapped IS NOT NULL"))
        ).one()  # type: ignore[call-overload]
    assert left[0] == 0
    refusal = await refused(
        custodian,
        DecryptDataKey(tenant="acme", key_id="datasets", caller=ACME, wrapped=data_key.wrapped),
    )  # type: ignore[attr-defined]
    assert refusal.refusal.reason == "key_destroyed"
    # A fresh custodian (a restart: empty cache) over the same database and master key cannot recover it.
    fresh = Custodian(store, KeyMaterial(root), service_caller=OPERATOR, min_destruction_wait_s=0)
    task = asyncio.create_task(fresh.run())
    try:
        again = await refused(
            fresh,
            DecryptDataKey(tenant="acme", key_id="datasets", caller=ACME, wrapped=data_key.wrapped),  # type: ignore[attr-defined]
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert again.refusal.reason == "key_destroyed"
    with pytest.raises(Refusal):
        async with store.unit_of_work() as uow:
            await fresh.material.version(KeyRepository(uow.session), "acme", "datasets", 1)


async def test_cross_tenant_and_wrong_site_are_refused_and_audited(
    custodian: Custodian, create_acme: CreateKey
) -> None:
    """Another tenant and a caller at a site outside the policy are refused, and each refusal is in the chain."""
    await ok(custodian, create_acme, KeyDescription)
    globex = Caller(principal="tenant:globex", site="fra-1")
    cross = await refused(
        custodian, GenerateDataKey(tenant="acme", key_id="datasets", caller=globex)
    )
    assert (cross.refusal.reason, cross.refusal.code) == ("cross_tenant", "unauthorized")
    away = Caller(principal="tenant:acme", site="iad-1", jurisdiction="US")
    wrong_site = await refused(
        custodian, GenerateDataKey(tenant="acme", key_id="datasets", caller=away)
    )
    assert wrong_site.refusal.reason == "site_not_allowed"
    records = await audit(custodian)
    by_seq = {r.seq: r for r in records}
    assert by_seq[cross.audit_seq].outcome == "refused"
    assert by_seq[cross.audit_seq].principal == "tenant:globex"
    assert by_seq[wrong_site.audit_seq].reason == "site_not_allowed"
    assert by_seq[wrong_site.audit_seq].site == "iad-1"
    assert verify_chain(records) == []


async def test_every_operation_is_chained_and_evented_without_key_material(
    custodian: Custodian, create_acme: CreateKey, store: Store
) -> None:
    """Each allowed or refused operation adds one chained record; the outbox holds audit and lifecycle events but no data key."""
    await ok(custodian, create_acme, KeyDescription)
    data_key = await ok(
        custodian, GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME), DataKey
    )
    await refused(custodian, DescribeKey(tenant="acme", key_id="nope", caller=ACME))
    await ok(custodian, ListKeys(tenant="acme", caller=ACME), KeyList)
    records = await audit(custodian)
    assert [r.operation for r in records] == [
        "create_key",
        "generate_data_key",
        "describe_key",
        "list_keys",
    ]
    assert [r.outcome for r in records] == ["allowed", "allowed", "refused", "allowed"]
    assert verify_chain(records) == []
    async with store.session() as session:
        rows = (await session.exec(text("SELECT subject, body FROM aifactory_outbox"))).all()  # type: ignore[call-overload]
    subjects = {subject for subject, _ in rows}
    assert "factory.keys.v1.evt.key_created.acme" in subjects
    assert "factory.keys.v1.audit.audit_records_appended.acme" in subjects
    plaintext = data_key.plaintext  # type: ignore[attr-defined]
    import base64

    for _, body in rows:
        assert plaintext not in body
        assert base64.b64encode(plaintext) not in body


async def test_refusal_audit_is_committed(custodian: Custodian, store: Store) -> None:
    """A refused command (unknown key) leaves its audit record committed in the database."""
    await refused(custodian, RotateKey(tenant="acme", key_id="ghost", caller=ACME))
    async with store.session() as session:
        rows = (await session.exec(text("SELECT seq FROM keys_audit WHERE chain = 'acme'"))).all()  # type: ignore[call-overload]
    assert [row[0] for row in rows] == [1]


async def test_concurrent_requests_share_commits_and_keep_one_chain(
    custodian: Custodian, create_acme: CreateKey
) -> None:
    """Many requests at once are group-committed and still form one gap-free chain."""
    import asyncio

    await ok(custodian, create_acme, KeyDescription)
    before = custodian.committed_batches
    answers = await asyncio.gather(
        *(
            custodian.execute(GenerateDataKey(tenant="acme", key_id="datasets", caller=ACME))
            for _ in range(200)
        )
    )
    assert all(isinstance(a, DataKey) for a in answers)
    assert custodian.committed_batches - before < 200
    records = await audit(custodian)
    assert len(records) == 201
    assert verify_chain(records) == []


async def test_maintenance_rotates_due_keys_and_destroys_due_ones(
    store: Store, root: MasterKeyRoot, acme_policy: KeyPolicy
) -> None:
    """A maintenance round rotates a key whose period elapsed and destroys one whose waiting period ended."""
    import asyncio
    import contextlib

    clock = [dt.datetime(2026, 3, 1, tzinfo=dt.UTC)]
    custodian = Custodian(
        store,
        KeyMaterial(root),
        service_caller=Caller(principal="service:keys", site="fra-1"),
        min_destruction_wait_s=60,
        clock=lambda: clock[0],
    )
    task = asyncio.create_task(custodian.run())
    try:
        policy = msgspec.structs.replace(acme_policy, rotation_period_s=3600)
        await ok(
            custodian,
            CreateKey(tenant="acme", key_id="rotating", policy=policy, caller=ACME),
            KeyDescription,
        )
        await ok(
            custodian,
            CreateKey(tenant="acme", key_id="doomed", policy=acme_policy, caller=ACME),
            KeyDescription,
        )
        await ok(
            custodian,
            ScheduleKeyDestruction(
                tenant="acme", key_id="doomed", caller=ACME, waiting_period_s=120
            ),
            KeyDescription,
        )
        assert await custodian.execute(Maintenance()) == MaintenanceReport(rings=0)
        clock[0] += dt.timedelta(hours=1)
        assert await custodian.execute(Maintenance()) == MaintenanceReport(rings=2)
        rotating = await ok(
            custodian, DescribeKey(tenant="acme", key_id="rotating", caller=ACME), KeyDescription
        )
        doomed = await ok(
            custodian, DescribeKey(tenant="acme", key_id="doomed", caller=ACME), KeyDescription
        )
        assert rotating.latest_version == 2  # type: ignore[attr-defined]
        assert doomed.state == "destroyed"  # type: ignore[attr-defined]
        records = await audit(custodian)
        automatic = [r for r in records if r.principal == "service:keys"]
        assert {(r.operation, r.key_id) for r in automatic} == {
            ("rotate_key", "rotating"),
            ("destroy_key", "doomed"),
        }
        assert verify_chain(records) == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_crashing_handler_is_audited_and_the_custodian_keeps_going(
    custodian: Custodian, create_acme: CreateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected failure is answered internal_error, audited, rolled back, and the next request works."""
    from aifactory.keys import handlers

    await ok(custodian, create_acme, KeyDescription)

    async def explode(ops: object, cmd: object) -> object:
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(handlers.HANDLERS, RotateKey, explode)
    crashed = await refused(custodian, RotateKey(tenant="acme", key_id="datasets", caller=ACME))
    assert (crashed.refusal.reason, crashed.refusal.code) == ("internal_error", "internal")
    assert "disk on fire" not in crashed.refusal.message
    monkeypatch.undo()
    described = await ok(
        custodian, DescribeKey(tenant="acme", key_id="datasets", caller=ACME), KeyDescription
    )
    assert described.latest_version == 1  # type: ignore[attr-defined]
    records = await audit(custodian)
    assert records[crashed.audit_seq - 1].reason == "internal_error"
    assert verify_chain(records) == []


async def test_a_chain_position_taken_by_another_writer_fails_loudly_and_is_retried(
    custodian: Custodian, create_acme: CreateKey, store: Store, root: MasterKeyRoot
) -> None:
    """Two custodians on one database (two replicas) never fork a chain: the loser's commit fails and it retries on the new head."""
    await ok(custodian, create_acme, KeyDescription)
    other = Custodian(store, KeyMaterial(root), service_caller=OPERATOR, min_destruction_wait_s=0)
    import asyncio
    import contextlib

    task = asyncio.create_task(other.run())
    try:
        await ok(other, DescribeKey(tenant="acme", key_id="datasets", caller=ACME), KeyDescription)
        # The first custodian's cached head is now stale (seq 1); its next append collides with seq 2.
        with structlog.testing.capture_logs() as logs:
            await ok(
                custodian,
                DescribeKey(tenant="acme", key_id="datasets", caller=ACME),
                KeyDescription,
            )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    records = await audit(custodian)
    assert [r.seq for r in records] == [1, 2, 3]
    assert verify_chain(records) == []
    assert any(
        line["event"] == "keys_commit_failed" and "keys_audit" in line["error"] for line in logs
    )


async def test_outbox_rows_are_written(
    custodian: Custodian, create_acme: CreateKey, store: Store
) -> None:
    """Creating a key writes its KeyCreated event to the outbox in the same commit."""
    await ok(custodian, create_acme, KeyDescription)
    async with store.session() as session:
        count = (
            await session.exec(text(f"SELECT count(*) FROM {OutboxRecord.__tablename__}"))
        ).one()  # type: ignore[call-overload]
    assert count[0] >= 2
