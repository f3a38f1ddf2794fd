"""Composition root of the keys service: the bus kit, the custodian and the NATS responder.

``build_service(settings, root)`` returns a ``KeysService``. It runs the kit's
``Service`` (database tables, NATS connection, stream provisioning, outbox relay,
metrics) and answers every keys command and query itself on core NATS (queue group
``keys``) with the kit's reply convention: ``ce-type: <command>.reply`` and the typed
reply, or ``ce-type: io.aifactory.error.v1`` and an ``ErrorReply``. It does not use the
kit's FastStream command path because that path commits one transaction per request
and a refusal raised as ``CommandRejected`` rolls back the audit record written with
it; here requests are decoded the same way (strictly, CloudEvents headers checked)
and handed to the ``Custodian``, which commits them in groups and answers each only
after its audit record is durable. This is the only module that touches NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from aifactory.bus.rpc import error_reply
from aifactory.bus.service import Service, serve_until_signal
from aifactory.contracts.base import Contract
from aifactory.contracts.cloudevents import CONTENT_TYPE, H_CONTENT_TYPE, H_TYPE, parse_headers
from aifactory.contracts.envelope import DEFAULT_MAX_BODY_BYTES, encode_body
from aifactory.contracts.errors import ContractError, InvalidCloudEvent
from aifactory.contracts.keys.v1 import Caller
from aifactory.contracts.registry import MessageSpec, spec_of
from aifactory.contracts.replies import ERROR_REPLY_TYPE, ErrorReply
from aifactory.keys.config import SERVICE, KeysSettings
from aifactory.keys.crypto import RootOfTrust
from aifactory.keys.custody import (
    Answer,
    Custodian,
    Maintenance,
    MaintenanceReport,
    PendingRequest,
    Refused,
)
from aifactory.keys.handlers import HANDLERS
from aifactory.keys.material import KeyMaterial
from aifactory.store.store import Store

log = structlog.get_logger(__name__)


def encode_answer(spec: MessageSpec, answer: Answer) -> tuple[bytes, dict[str, str]]:
    """The reply body and headers of an answer."""
    if isinstance(answer, Refused):
        details: dict[str, str] = {"reason": answer.refusal.reason}
        if answer.audit_seq:
            details["tenant"] = answer.chain
            details["audit_seq"] = str(answer.audit_seq)
        body = encode_body(
            ErrorReply(code=answer.refusal.code, message=answer.refusal.message, details=details)
        )
        return body, {H_TYPE: ERROR_REPLY_TYPE, H_CONTENT_TYPE: CONTENT_TYPE}
    if isinstance(answer, MaintenanceReport):
        raise TypeError("maintenance is internal and has no reply")
    assert spec.reply_ce_type is not None
    return encode_body(answer), {H_TYPE: spec.reply_ce_type, H_CONTENT_TYPE: CONTENT_TYPE}


class KeysService:
    """The running keys service."""

    def __init__(self, settings: KeysSettings, root: RootOfTrust) -> None:
        self.settings = settings
        self.root = root
        self.store = Store(settings.database_url)
        self.service = Service(
            SERVICE,
            bus_settings=settings.bus,
            store=self.store,
            metrics_port=settings.metrics_port,
            ready_on_start=False,
        )
        self.custodian = Custodian(
            self.store,
            KeyMaterial(root),
            service_caller=Caller(principal=f"service:{SERVICE}", site=settings.site),
            min_destruction_wait_s=settings.min_destruction_wait_s,
            max_batch=settings.max_batch,
            cache_rings=self.store.is_sqlite,
            on_commit=self._committed,
        )
        self._commit_seconds = self.service.metrics.handler_seconds("keys_commit")
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.subjects: list[str] = []

    def _committed(self) -> None:
        if self.service.relay is not None:
            self.service.relay.wake()

    async def start(self) -> None:
        """Start the kit's service, then serve every keys command and query."""
        await self.service.start()
        nc = self.service.bus.nc
        for command_type in HANDLERS:
            spec = spec_of(command_type)
            subject = self.service.bus.namespace.subject(spec.subject_filter)
            self._subscriptions.append(
                await nc.subscribe(subject, queue=SERVICE, cb=self._responder(spec))
            )
            self.subjects.append(subject)
        await nc.flush(timeout=5)
        self._tasks.append(asyncio.create_task(self.custodian.run(), name="keys-custodian"))
        self._tasks.append(asyncio.create_task(self._maintain(), name="keys-maintenance"))
        self.service.mark_ready()
        log.info(
            "keys_serving",
            root_of_trust=self.root.description,
            subjects=len(self.subjects),
            site=self.settings.site,
        )

    def _responder(self, spec: MessageSpec) -> Callable[[Msg], Awaitable[None]]:
        nc = self.service.bus.nc
        custodian = self.custodian

        async def on_request(msg: Msg) -> None:
            reply_to = msg.reply
            if not reply_to:
                log.warning("keys_request_without_reply_subject", type=spec.ce_type)
                return
            decoded = decode_request(spec, msg.headers or {}, msg.data)
            if isinstance(decoded, tuple):
                await nc.publish(reply_to, decoded[0], headers=decoded[1])
                return

            async def respond(answer: Answer) -> None:
                body, headers = encode_answer(spec, answer)
                await nc.publish(reply_to, body, headers=headers)

            custodian.submit(PendingRequest(decoded.command, decoded.request_id, respond))

        return on_request

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.settings.maintenance_interval_s)
            try:
                report = await self.custodian.execute(Maintenance())
            except Exception:
                log.exception("keys_maintenance_failed")
                continue
            if isinstance(report, MaintenanceReport) and report.rings:
                log.info("keys_maintenance_applied", rings=report.rings)

    async def stop(self) -> None:
        """Stop taking requests, answer those already queued, then stop everything."""
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self.custodian.idle()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.service.stop()

    async def run(self) -> int:
        """Start, serve until SIGINT/SIGTERM (0) or until a background task ends (1), stop."""
        await self.start()
        try:
            return await serve_until_signal([*self._tasks, *self.service._tasks], service=SERVICE)
        finally:
            await self.stop()


@dataclass(frozen=True, slots=True)
class DecodedRequest:
    """A request that decoded: its command and the id its audit record carries."""

    command: Contract
    request_id: str


def decode_request(
    spec: MessageSpec, headers: Mapping[str, str], body: bytes
) -> DecodedRequest | tuple[bytes, dict[str, str]]:
    """The decoded request, or the error reply for one that does not decode.

    The same rules as the kit's command path: a wrong ``ce-type`` is
    ``unknown_request``; an oversized body, garbled CloudEvents headers or a body that
    does not decode strictly (unknown fields, wrong types, out-of-range values) is
    ``invalid_request``.
    """
    sent_type = headers.get(H_TYPE)
    if sent_type is not None and sent_type != spec.ce_type:
        return error_reply(
            "unknown_request",
            f"this subject takes {spec.ce_type}, not {sent_type}",
            expected=spec.ce_type,
        )
    if len(body) > DEFAULT_MAX_BODY_BYTES:
        return error_reply(
            "invalid_request", f"body is {len(body)} bytes, over {DEFAULT_MAX_BODY_BYTES}"
        )
    try:
        event = parse_headers(headers) if sent_type is not None else None
        command = spec.decode(body)
    except (ContractError, InvalidCloudEvent) as exc:
        return error_reply("invalid_request", str(exc), type=spec.ce_type)
    return DecodedRequest(command, event.id if event is not None else str(uuid.uuid4()))


def build_service(settings: KeysSettings, root: RootOfTrust) -> KeysService:
    """The keys service, not yet started."""
    return KeysService(settings, root)
