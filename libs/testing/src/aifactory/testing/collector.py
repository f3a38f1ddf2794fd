"""Collect messages published on a subject, for assertions in tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.aio.msg import Msg

from aifactory.contracts.envelope import Envelope, read_message


@dataclass
class CollectedEvents:
    """Messages seen on a subscription, in arrival order."""

    messages: list[Msg] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, msg: Msg) -> None:
        """Record a message and wake waiters."""
        self.messages.append(msg)
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Msg]:
        """Wait until at least ``count`` messages arrived; fail clearly on timeout."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.messages)

    def envelopes(self) -> list[Envelope]:  # type: ignore[type-arg]
        """The collected messages decoded as contracts."""
        return [read_message(m.headers, m.data) for m in self.messages]


@asynccontextmanager
async def collect_events(nc: Client, subject: str) -> AsyncIterator[CollectedEvents]:
    """Subscribe to ``subject`` (core NATS) for the duration of the block."""
    collected = CollectedEvents()

    async def on_message(msg: Msg) -> None:
        collected.add(msg)

    sub = await nc.subscribe(subject, cb=on_message)
    try:
        yield collected
    finally:
        await sub.unsubscribe()
