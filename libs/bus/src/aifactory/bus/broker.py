"""The FastStream broker factory: msgspec bodies, structlog logging, trace context.

``make_broker`` returns a ``NatsBroker`` set up the way every aifactory service needs
it, handling the sharp edges listed in shared/LIBRARIES.md: the msgspec serializer
(the default pydantic one rejects ``msgspec.Struct``), our own stdlib logger instead
of FastStream's access log (two INFO lines per message, ~30% of throughput), and
``TraceContextMiddleware``, which binds ``trace_id``/``tenant``/``event_id`` into the
log context of every handled message and puts the current traceparent on everything
published while handling it (a new trace when the incoming message had none).

Use it for ordinary FastStream subscribers. The kit's hot paths do not go through
FastStream: events on JetStream use ``EventConsumer`` (a thin nats-py batch loop) and
commands use ``CommandEndpoints`` (a thin nats-py responder), the measured fast paths;
see docs/bus-kit.md. AsyncAPI is generated from the contracts registry by
``aifactory contracts export``, never from FastStream's pydantic path, which crashes
on Structs (ag2ai/faststream#2101).
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from fast_depends.msgspec import MsgSpecSerializer
from faststream import BaseMiddleware
from faststream.nats import NatsBroker

from aifactory.bus.context import headers_context, traceparent_from
from aifactory.bus.settings import BusSettings
from aifactory.contracts.cloudevents import (
    H_TRACEPARENT,
    H_W3C_TRACEPARENT,
    new_traceparent,
    trace_id_of,
)

current_traceparent: ContextVar[str | None] = ContextVar("current_traceparent", default=None)


class TraceContextMiddleware(BaseMiddleware):
    """Binds the log context of each message and propagates its traceparent on publish."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        """Run the handler with the message's trace, tenant and event id bound."""
        headers = msg.headers or {}
        traceparent = traceparent_from(headers)
        token = current_traceparent.set(traceparent)
        try:
            with headers_context({**headers, H_TRACEPARENT: traceparent}):
                return await call_next(msg)
        finally:
            current_traceparent.reset(token)

    async def publish_scope(self, call_next: Any, cmd: Any) -> Any:
        """Add the current trace (a child span of it) to an outgoing message."""
        parent = current_traceparent.get()
        if parent is not None and cmd.headers is not None:
            child = new_traceparent(trace_id_of(parent))
            cmd.headers.setdefault(H_TRACEPARENT, child)
            cmd.headers.setdefault(H_W3C_TRACEPARENT, child)
        return await call_next(cmd)


def make_broker(settings: BusSettings, *, service: str, **options: Any) -> NatsBroker:
    """A NatsBroker for ``service`` with the msgspec serializer, our logger and trace middleware."""
    return NatsBroker(
        settings.servers,
        serializer=MsgSpecSerializer(),
        logger=logging.getLogger(f"aifactory.{service}.broker"),
        log_level=logging.DEBUG,
        middlewares=[TraceContextMiddleware],
        name=f"aifactory-{service}-rpc",
        **options,
    )
