"""The keys service over a real nats-server, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from aifactory.bus.rpc import CommandFailed
from aifactory.bus.settings import BusSettings
from aifactory.contracts.cloudevents import H_TYPE
from aifactory.contracts.envelope import build_message
from aifactory.contracts.keys.audit_chain import verify_chain
from aifactory.contracts.keys.v1 import (
    AuditPage,
    AuditRecordsAppended,
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
from aifactory.contracts.replies import ERROR_REPLY_TYPE, ErrorReply
from aifactory.keys.app import KeysService, build_service
from aifactory.keys.config import KeysSettings
from aifactory.keys.crypto import MasterKeyRoot
from aifactory.testing.waiting import wait_until


async def _answered(nc: Client, subject: str, body: bytes) -> Msg | None:
    try:
        return await nc.request(subject, body, timeout=5)
    except NoRespondersError:
        return None


pytestmark = pytest.mark.integration

ACME = Caller(principal="tenant:acme", site="fra-1")
OPERATOR = Caller(principal="operator:alice", site="hq")
KEY = {"tenant": "acme", "key_id": "datasets"}


def encodings(secret: bytes) -> list[bytes]:
    """Every way a secret could show up in a message: raw, base64 (both alphabets), hex."""
    return [
        secret,
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret),
        base64.b64encode(secret).rstrip(b"="),
        binascii.hexlify(secret),
    ]


async def audit_head(call: Callable[..., Any]) -> int:
    """The current head sequence of acme's audit chain."""
    page = await call(ListAuditRecords(tenant="acme", caller=OPERATOR, limit=1), AuditPage)
    return int(page.head_seq)


async def published_audit_seqs(nats_client: Client, bus_settings: BusSettings) -> set[int]:
    """The audit sequence numbers published so far on acme's audit subject."""
    js = nats_client.jetstream()
    stream = bus_settings.namespace.stream("FACTORY_KEYS")
    info = await js.stream_info(stream)
    seqs: set[int] = set()
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg(stream, seq)
        if ".audit." in (raw.subject or ""):
            seqs.update(
                r.seq for r in msgspec.json.decode(raw.data, type=AuditRecordsAppended).records
            )
    return seqs


async def test_full_scenario_never_puts_key_material_on_the_bus_or_in_logs(
    keys_service: KeysService,
    call: Callable[..., Any],
    nats_client: Client,
    bus_settings: BusSettings,
    collect_events: Any,
    create_acme: CreateKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Create, data keys, payloads, rotate, rewrap, revoke, destroy: no data key plaintext in any message on factory.> (dead letters included) or any log line."""
    caplog.set_level(logging.DEBUG)
    everything = bus_settings.namespace.subject("factory.>")
    secrets: list[bytes] = []
    with structlog.testing.capture_logs() as logs:
        async with collect_events(nats_client, everything) as seen:
            await call(create_acme, KeyDescription)
            data_key = await call(GenerateDataKey(**KEY, caller=ACME, context="ds-1"), DataKey)
            secrets.append(data_key.plaintext)
            unwrapped = await call(
                DecryptDataKey(**KEY, caller=ACME, wrapped=data_key.wrapped, context="ds-1"),
                DataKeyPlaintext,
            )
            assert unwrapped.plaintext == data_key.plaintext
            sealed = await call(Encrypt(**KEY, caller=ACME, plaintext=b"payload"), Sealed)
            opened = await call(Decrypt(**KEY, caller=ACME, ciphertext=sealed.ciphertext), Opened)
            assert opened.plaintext == b"payload"
            await call(RotateKey(**KEY, caller=ACME), KeyDescription)
            second = await call(GenerateDataKey(**KEY, caller=ACME), DataKey)
            secrets.append(second.plaintext)
            rewrapped = await call(
                Rewrap(
                    **KEY,
                    caller=ACME,
                    items=[RewrapItem(ciphertext=data_key.wrapped, context="ds-1")],
                ),
                Rewrapped,
            )
            assert rewrapped.version == 2
            with pytest.raises(CommandFailed):
                await call(
                    GenerateDataKey(**KEY, caller=Caller(principal="tenant:globex", site="fra-1")),
                    DataKey,
                )
            await call(RevokeKey(**KEY, caller=OPERATOR, reason="offboarding"), KeyDescription)
            await call(
                ScheduleKeyDestruction(**KEY, caller=OPERATOR, waiting_period_s=0), KeyDescription
            )
            await call(DestroyKey(**KEY, caller=OPERATOR), KeyDescription)
            # An undecodable request on a command subject (answered, never dead-lettered or logged with secrets).
            await nats_client.request(
                bus_settings.namespace.subject("factory.keys.v1.cmd.decrypt_data_key"),
                b"{garbage",
                timeout=5,
            )
            head = await audit_head(call)
            await wait_until(
                lambda: published_audit_seqs(nats_client, bus_settings),
                lambda seqs: seqs >= set(range(1, head + 1)),
                what="every audit record published",
            )
            await wait_until(
                lambda: _count(seen.messages, ".evt.key_destroyed."),
                lambda n: n >= 1,
                what="key_destroyed event",
            )
    subjects = {msg.subject for msg in seen.messages}
    for name in (
        "key_created",
        "key_rotated",
        "key_revoked",
        "key_destruction_scheduled",
        "key_destroyed",
    ):
        assert any(f".evt.{name}." in s for s in subjects), name
    assert any(".audit.audit_records_appended.acme" in s for s in subjects)
    log_text = "\n".join(str(line) for line in logs) + "\n" + caplog.text
    for secret in secrets:
        for form in encodings(secret):
            for msg in seen.messages:
                assert form not in msg.data, f"key material on {msg.subject}"
                for name, value in (msg.headers or {}).items():
                    assert form.decode("latin-1") not in value, (
                        f"key material in header {name} on {msg.subject}"
                    )
            assert form.decode("latin-1") not in log_text, "key material in a log line"


async def _count(messages: list[Any], fragment: str) -> int:
    return sum(fragment in m.subject for m in messages)


async def test_rotation_and_minimum_version_over_nats(
    keys_service: KeysService, call: Callable[..., Any], create_acme: CreateKey
) -> None:
    """After rotation an old data key still unwraps; raising the minimum version refuses it with a typed, audited error."""
    await call(create_acme, KeyDescription)
    old = await call(GenerateDataKey(**KEY, caller=ACME), DataKey)
    await call(RotateKey(**KEY, caller=ACME), KeyDescription)
    again = await call(DecryptDataKey(**KEY, caller=ACME, wrapped=old.wrapped), DataKeyPlaintext)
    assert (again.version, again.plaintext) == (1, old.plaintext)
    await call(
        SetMinDecryptionVersion(**KEY, caller=ACME, min_decryption_version=2), KeyDescription
    )
    with pytest.raises(CommandFailed) as refused:
        await call(DecryptDataKey(**KEY, caller=ACME, wrapped=old.wrapped), DataKeyPlaintext)
    assert refused.value.error.code == "conflict"
    assert refused.value.error.details["reason"] == "below_min_decryption_version"
    seq = int(refused.value.error.details["audit_seq"])
    page = await call(
        ListAuditRecords(tenant="acme", caller=OPERATOR, after_seq=seq - 1, limit=1), AuditPage
    )
    assert page.records[0].outcome == "refused"
    assert page.records[0].reason == "below_min_decryption_version"


async def test_revoke_refuses_everything_and_destroy_is_unrecoverable(
    keys_service: KeysService, call: Callable[..., Any], create_acme: CreateKey
) -> None:
    """A revoked key refuses every operation immediately; once destroyed, its data keys never decrypt again."""
    await call(create_acme, KeyDescription)
    data_key = await call(GenerateDataKey(**KEY, caller=ACME), DataKey)
    await call(RevokeKey(**KEY, caller=ACME), KeyDescription)
    for command, reply in (
        (GenerateDataKey(**KEY, caller=ACME), DataKey),
        (DecryptDataKey(**KEY, caller=ACME, wrapped=data_key.wrapped), DataKeyPlaintext),
        (Encrypt(**KEY, caller=ACME, plaintext=b"x"), Sealed),
        (Rewrap(**KEY, caller=ACME, items=[RewrapItem(ciphertext=data_key.wrapped)]), Rewrapped),
    ):
        with pytest.raises(CommandFailed) as refused:
            await call(command, reply)
        assert refused.value.error.details["reason"] == "key_revoked"
    await call(ScheduleKeyDestruction(**KEY, caller=ACME, waiting_period_s=0), KeyDescription)
    destroyed = await call(DestroyKey(**KEY, caller=ACME), KeyDescription)
    assert destroyed.state == "destroyed"
    with pytest.raises(CommandFailed) as gone:
        await call(DecryptDataKey(**KEY, caller=ACME, wrapped=data_key.wrapped), DataKeyPlaintext)
    assert gone.value.error.details["reason"] == "key_destroyed"


async def test_cross_tenant_and_wrong_site_refused_audited_and_chain_verifies(
    keys_service: KeysService, call: Callable[..., Any], create_acme: CreateKey
) -> None:
    """A call from another tenant or from a site outside the residency is unauthorized and appears in acme's chain."""
    await call(create_acme, KeyDescription)
    for caller, reason in (
        (Caller(principal="tenant:globex", site="fra-1"), "cross_tenant"),
        (Caller(principal="tenant:acme", site="iad-1"), "site_not_allowed"),
        (Caller(principal="service:billing", site="fra-1"), "caller_not_allowed"),
    ):
        with pytest.raises(CommandFailed) as refused:
            await call(GenerateDataKey(**KEY, caller=caller), DataKey)
        assert refused.value.error.code == "unauthorized"
        assert refused.value.error.details["reason"] == reason
    with pytest.raises(CommandFailed) as listing:
        await call(
            ListKeys(tenant="acme", caller=Caller(principal="tenant:globex", site="fra-1")), KeyList
        )
    assert listing.value.error.details["reason"] == "cross_tenant"
    page = await call(ListAuditRecords(tenant="acme", caller=OPERATOR), AuditPage)
    assert [(r.principal, r.outcome) for r in page.records[1:]] == [
        ("tenant:globex", "refused"),
        ("tenant:acme", "refused"),
        ("service:billing", "refused"),
        ("tenant:globex", "refused"),
    ]
    assert verify_chain(page.records) == []


@pytest.mark.parametrize(
    ("subject", "body", "code", "fragment"),
    [
        ("generate_data_key", b"{not json", "invalid_request", "malformed"),
        (
            "generate_data_key",
            b'{"tenant":"acme","key_id":"datasets","caller":{"principal":"tenant:acme","site":"fra-1"},"colour":"red"}',
            "invalid_request",
            "unknown field",
        ),
        (
            "encrypt",
            b'{"tenant":"acme","key_id":"datasets","caller":{"principal":"tenant:acme","site":"fra-1"},"plaintext":"'
            + base64.b64encode(b"x" * 5000)
            + b'"}',
            "invalid_request",
            "length",
        ),
        (
            "generate_data_key",
            b'{"tenant":"ACME; drop","key_id":"datasets","caller":{"principal":"tenant:acme","site":"fra-1"}}',
            "invalid_request",
            "tenant",
        ),
        (
            "generate_data_key",
            b'{"tenant":"acme","key_id":"datasets","caller":{"principal":"root","site":"fra-1"}}',
            "invalid_request",
            "principal",
        ),
        (
            "list_audit_records",
            b'{"tenant":"acme","caller":{"principal":"operator:x","site":"hq"},"limit":100000000}',
            "invalid_request",
            "<= 1000",
        ),
    ],
)
async def test_bad_requests_get_typed_errors_and_service_keeps_running(
    keys_service: KeysService,
    call: Callable[..., Any],
    nats_client: Client,
    bus_settings: BusSettings,
    create_acme: CreateKey,
    subject: str,
    body: bytes,
    code: str,
    fragment: str,
) -> None:
    """Malformed bytes, unknown fields, oversized payloads, bad ids and absurd limits are answered invalid_request, and the next request works."""
    kind = "qry" if subject.startswith("list") else "cmd"
    wire = bus_settings.namespace.subject(f"factory.keys.v1.{kind}.{subject}")
    response = await wait_until(
        lambda: _answered(nats_client, wire, body),
        lambda reply: reply is not None,
        timeout=5,
        what="a reply (no responders is retried, as the kit's request() does)",
    )
    assert response is not None
    assert response.headers is not None
    assert response.headers[H_TYPE] == ERROR_REPLY_TYPE
    error = msgspec.json.decode(response.data, type=ErrorReply)
    assert error.code == code
    assert fragment in error.message
    assert (await call(create_acme, KeyDescription)).state == "enabled"


async def test_wrong_ce_type_is_unknown_request(
    keys_service: KeysService, nats_client: Client, bus_settings: BusSettings
) -> None:
    """A request whose ce-type is not the subject's command gets unknown_request."""
    message = build_message(GenerateDataKey(**KEY, caller=ACME), source="/test")
    headers = {**message.headers, H_TYPE: "io.aifactory.keys.encrypt.v1"}
    response = await nats_client.request(
        bus_settings.namespace.subject(message.subject), message.body, headers=headers, timeout=5
    )
    assert msgspec.json.decode(response.data, type=ErrorReply).code == "unknown_request"


async def test_restart_keeps_every_key_and_the_chain(
    keys_settings: KeysSettings,
    root: MasterKeyRoot,
    nats_client: Client,
    call: Callable[..., Any],
    create_acme: CreateKey,
) -> None:
    """After a restart over the same database and master key, old data keys unwrap, state is kept and the chain continues intact."""
    first = build_service(keys_settings, root)
    await first.start()
    try:
        await call(create_acme, KeyDescription)
        await call(RotateKey(**KEY, caller=ACME), KeyDescription)
        data_key = await call(GenerateDataKey(**KEY, caller=ACME), DataKey)
        await call(
            CreateKey(tenant="acme", key_id="logs", policy=create_acme.policy, caller=ACME),
            KeyDescription,
        )
        await call(RevokeKey(tenant="acme", key_id="logs", caller=ACME), KeyDescription)
    finally:
        await first.stop()
    second = build_service(keys_settings, root)
    await second.start()
    try:
        again = await call(
            DecryptDataKey(**KEY, caller=ACME, wrapped=data_key.wrapped), DataKeyPlaintext
        )
        assert again.plaintext == data_key.plaintext
        listing = await call(ListKeys(tenant="acme", caller=ACME), KeyList)
        assert {(k.key_id, k.state, k.latest_version) for k in listing.keys} == {
            ("datasets", "enabled", 2),
            ("logs", "revoked", 1),
        }
        page = await call(ListAuditRecords(tenant="acme", caller=OPERATOR), AuditPage)
        assert verify_chain(page.records) == []
        assert len(page.records) == 7
    finally:
        await second.stop()


async def test_automatic_rotation_by_period(
    keys_settings: KeysSettings,
    root: MasterKeyRoot,
    nats_client: Client,
    call: Callable[..., Any],
    create_acme: CreateKey,
) -> None:
    """A key with a one-second rotation period gets new versions from the maintenance loop, announced as automatic."""
    import dataclasses

    settings = dataclasses.replace(keys_settings, maintenance_interval_s=0.2)
    service = build_service(settings, root)
    await service.start()
    try:
        policy = msgspec.structs.replace(create_acme.policy, rotation_period_s=1)
        await call(msgspec.structs.replace(create_acme, policy=policy), KeyDescription)
        described = await wait_until(
            lambda: call(DescribeKey(**KEY, caller=ACME), KeyDescription),
            lambda d: d.latest_version >= 2,
            what="an automatic rotation",
        )
        assert described.state == "enabled"
        page = await call(ListAuditRecords(tenant="acme", caller=OPERATOR), AuditPage)
        assert any(
            r.operation == "rotate_key" and r.principal == "service:keys" for r in page.records
        )
    finally:
        await service.stop()
