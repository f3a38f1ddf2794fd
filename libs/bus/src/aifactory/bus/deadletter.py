"""Dead letters: recording a message the consumer gives up on, then terminating it.

The record (``aifactory.contracts.dlq.DeadLetter``) goes to ``factory.dlq.<service>``
on the ``FACTORY_DLQ`` stream with the original subject, headers and body, the error
class and message and the delivery count. Its ``ce-id`` is derived from the consumer
and the original stream sequence, so dead-lettering the same delivery twice (say, a
crash between recording and terminating) stores one record.
"""

from __future__ import annotations

import uuid

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from aifactory.bus.settings import Namespace
from aifactory.contracts.cloudevents import utcnow
from aifactory.contracts.dlq import MAX_KEPT_BODY_BYTES, DeadLetter
from aifactory.contracts.envelope import build_message

log = structlog.get_logger(__name__)
_DLQ_NAMESPACE = uuid.UUID("6f1c3f5e-8a2b-4d7e-9a51-0d3c2b1a0f99")


class DeadLetterPublisher:
    """Publishes dead-letter records for one service."""

    def __init__(self, js: JetStreamContext, *, service: str, namespace: Namespace) -> None:
        self.js = js
        self.service = service
        self.namespace = namespace
        self.source = f"/aifactory/{service}"

    async def dead_letter(self, msg: Msg, error: BaseException, *, consumer: str) -> DeadLetter:
        """Publish the dead-letter record of ``msg`` (awaiting JetStream's ack)."""
        meta = msg.metadata if msg.reply else None
        sequence = meta.sequence.stream if meta else None
        record = DeadLetter(
            service=self.service,
            consumer=consumer,
            original_subject=msg.subject,
            original_headers=dict(msg.headers or {}),
            original_body=bytes(msg.data[:MAX_KEPT_BODY_BYTES]),
            original_body_size=len(msg.data),
            original_body_truncated=len(msg.data) > MAX_KEPT_BODY_BYTES,
            error_class=type(error).__name__,
            error_message=str(error)[:4000],
            delivery_count=meta.num_delivered if meta else 1,
            stream_sequence=sequence,
            dead_lettered_at=utcnow(),
        )
        key = f"{consumer}:{meta.stream if meta else msg.subject}:{sequence}"
        outgoing = build_message(
            record,
            source=self.source,
            scope=self.service,
            subject=(msg.headers or {}).get("ce-id"),
            event_id=str(uuid.uuid5(_DLQ_NAMESPACE, key)) if sequence is not None else None,
            tenant=(msg.headers or {}).get("ce-tenant"),
        )
        await self.js.publish(
            self.namespace.subject(outgoing.subject), outgoing.body, headers=outgoing.headers
        )
        log.warning(
            "message_dead_lettered",
            consumer=consumer,
            subject=msg.subject,
            error_class=record.error_class,
            error=record.error_message,
            delivery_count=record.delivery_count,
        )
        return record
