"""Direct publishing for stateless producers (agents, importers, tools, tests).

A service that changes state publishes only through its outbox (``UnitOfWork.emit``
plus ``OutboxRelay``), so the event and the state commit together. Producers with no
state of their own use ``EventPublisher``: CloudEvents headers, ``Nats-Msg-Id`` =
``ce-id``, JetStream acknowledgement awaited (or batched with ``publish_many``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable

from nats.js import JetStreamContext
from nats.js.api import PubAck

from aifactory.bus.settings import Namespace
from aifactory.contracts.base import Contract
from aifactory.contracts.envelope import OutgoingMessage, build_message
from aifactory.store.events import NewEvent


class EventPublisher:
    """Publishes contracts as CloudEvents to JetStream."""

    def __init__(self, js: JetStreamContext, *, source: str, namespace: Namespace) -> None:
        self.js = js
        self.source = source
        self.namespace = namespace

    def build(
        self,
        event: NewEvent | Contract,
        *,
        event_id: str | None = None,
        time: dt.datetime | None = None,
        traceparent: str | None = None,
    ) -> OutgoingMessage:
        """The message that ``publish`` would send."""
        new = event if isinstance(event, NewEvent) else NewEvent(event)
        return build_message(
            new.data,
            source=self.source,
            tenant=new.tenant,
            scope=new.scope,
            subject=new.subject,
            event_id=event_id,
            time=time,
            traceparent=traceparent,
        )

    async def send(self, message: OutgoingMessage, timeout: float = 5.0) -> PubAck:
        """Publish an already-built message and wait for JetStream's ack."""
        return await self.js.publish(
            self.namespace.subject(message.subject),
            message.body,
            headers=message.headers,
            timeout=timeout,
        )

    async def publish(
        self,
        event: NewEvent | Contract,
        *,
        event_id: str | None = None,
        time: dt.datetime | None = None,
        traceparent: str | None = None,
    ) -> PubAck:
        """Publish one event and wait for JetStream's ack (``.duplicate`` tells a re-send)."""
        return await self.send(
            self.build(event, event_id=event_id, time=time, traceparent=traceparent)
        )

    async def publish_many(
        self, events: Iterable[NewEvent | Contract], timeout: float = 30.0
    ) -> list[PubAck]:
        """Publish many events pipelined (``publish_async``), then await every ack."""
        futures = []
        for event in events:
            message = self.build(event)
            futures.append(
                await self.js.publish_async(
                    self.namespace.subject(message.subject), message.body, headers=message.headers
                )
            )
        async with asyncio.timeout(timeout):
            return list(await asyncio.gather(*futures))
