"""Log context for the message being handled: trace id, tenant, event id.

Every log line written while a message is handled carries ``trace_id`` (from the
W3C traceparent, or a new one when the message has none), ``tenant`` and
``event_id``, through structlog's contextvars. Used by the consumer loop and by the
FastStream middleware, so both paths log the same fields.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import structlog

from aifactory.contracts.cloudevents import (
    H_ID,
    H_TENANT,
    H_TRACEPARENT,
    H_W3C_TRACEPARENT,
    CloudEvent,
    new_traceparent,
    trace_id_of,
)


def traceparent_from(headers: Mapping[str, str] | None) -> str:
    """The message's traceparent, or a new one (new trace) when absent or invalid."""
    if headers:
        for name in (H_TRACEPARENT, H_W3C_TRACEPARENT):
            value = headers.get(name)
            if value and trace_id_of(value):
                return value
    return new_traceparent()


@contextmanager
def message_context(
    *, traceparent: str, tenant: str | None, event_id: str | None
) -> Iterator[None]:
    """Bind ``trace_id``, ``tenant`` and ``event_id`` for the duration of the block."""
    # bind/reset with tokens: bound_contextvars() saves and restores every variable,
    # which costs several microseconds per message on the consumer's hot path.
    tokens = structlog.contextvars.bind_contextvars(
        trace_id=trace_id_of(traceparent), tenant=tenant, event_id=event_id
    )
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)


@contextmanager
def event_context(event: CloudEvent) -> Iterator[None]:
    """``message_context`` of a decoded CloudEvent."""
    with message_context(
        traceparent=event.traceparent or new_traceparent(),
        tenant=event.tenant,
        event_id=event.id,
    ):
        yield


@contextmanager
def headers_context(headers: Mapping[str, str] | None) -> Iterator[None]:
    """``message_context`` read from raw headers (for messages not yet decoded)."""
    headers = headers or {}
    with message_context(
        traceparent=traceparent_from(headers),
        tenant=headers.get(H_TENANT),
        event_id=headers.get(H_ID),
    ):
        yield
