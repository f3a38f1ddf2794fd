"""The dead-letter record: what a consumer could not process, and why.

A consumer that gives up on a message (undecodable, wrong type, no ``ce-id``, or a
handler that kept failing until ``max_deliver``) publishes one ``DeadLetter`` to
``factory.dlq.<service>`` (JetStream stream ``FACTORY_DLQ``) and terminates the
original, so a poison message never blocks those behind it. The record keeps the
original subject, headers and body so an operator can inspect and re-drive it.
Bodies above ``MAX_KEPT_BODY_BYTES`` are kept truncated (with their full size) so
the record itself always fits in a NATS message.
"""

from __future__ import annotations

from aifactory.contracts.base import Contract, Timestamp
from aifactory.contracts.registry import message

MAX_KEPT_BODY_BYTES = 256 * 1024


@message(
    domain="dlq", name="dead_letter", version=1, kind="evt", scope="service", subject="factory.dlq"
)
class DeadLetter(Contract, frozen=True, kw_only=True):
    """A message a consumer gave up on, with the reason and the original bytes."""

    service: str
    consumer: str
    original_subject: str
    original_headers: dict[str, str]
    original_body: bytes
    error_class: str
    error_message: str
    delivery_count: int
    dead_lettered_at: Timestamp
    original_body_size: int = 0
    original_body_truncated: bool = False
    stream_sequence: int | None = None
