"""The node agent's loop: read accelerators, publish heartbeats and telemetry.

Every interval the agent reads its ``AcceleratorReader`` and publishes one message
on core NATS: a ``NodeTelemetry`` (which also counts as a heartbeat) every
``telemetry_every`` intervals, a small ``NodeHeartbeat`` on the others. The body is
the bare msgspec JSON (no CloudEvents headers: telemetry is high-rate and lossy by
design). Xid events are kept for the agent session (the last 32) and repeated in
every telemetry message, so a lost message never loses a fatal Xid; a restarted
agent starts a new session, which is how the health service learns that a GPU was
reset.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections import deque
from collections.abc import Awaitable, Callable

import msgspec
import structlog

from aifactory.agent.readers import AcceleratorReader
from aifactory.contracts.health.v1 import NodeHeartbeat, NodeTelemetry, XidEvent
from aifactory.contracts.registry import spec_of

log = structlog.get_logger(__name__)

Publish = Callable[[str, bytes], Awaitable[None]]
TELEMETRY_SUBJECT = spec_of(NodeTelemetry).subject()
HEARTBEAT_SUBJECT = spec_of(NodeHeartbeat).subject()
SESSION_XIDS = 32


class NodeAgent:
    """Publishes one node's heartbeats and telemetry at a fixed interval."""

    def __init__(
        self,
        *,
        node_id: str,
        reader: AcceleratorReader,
        publish: Publish,
        interval_s: float,
        telemetry_every: int = 1,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.node_id = node_id
        self.reader = reader
        self.publish = publish
        self.interval_s = interval_s
        self.telemetry_every = max(1, telemetry_every)
        self.session = secrets.token_hex(4)
        self.seq = 0
        self.sent = 0
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._xids: deque[XidEvent] = deque(maxlen=SESSION_XIDS)
        self._encoder = msgspec.json.Encoder()
        self._was_muted = False

    def build(self) -> tuple[str, bytes] | None:
        """The subject and body of this interval's message (None when muted)."""
        self.seq += 1
        samples = self.reader.sample()
        self._xids.extend(self.reader.poll_xids())
        if self.reader.muted():
            if not self._was_muted:
                log.warning("agent_muted", node_id=self.node_id, seq=self.seq)
                self._was_muted = True
            return None
        interval_ms = max(10, round(self.interval_s * 1000))
        if self.seq % self.telemetry_every == 0:
            message: NodeTelemetry | NodeHeartbeat = NodeTelemetry(
                node_id=self.node_id,
                session=self.session,
                seq=self.seq,
                sent_at=self._clock(),
                interval_ms=interval_ms,
                source=self.reader.source,
                accelerator=self.reader.accelerator,
                gpus=samples,
                xids=list(self._xids),
            )
            return TELEMETRY_SUBJECT, self._encoder.encode(message)
        heartbeat = NodeHeartbeat(
            node_id=self.node_id,
            session=self.session,
            seq=self.seq,
            sent_at=self._clock(),
            interval_ms=interval_ms,
            source=self.reader.source,
            accelerator=self.reader.accelerator,
            accelerators=len(samples),
        )
        return HEARTBEAT_SUBJECT, self._encoder.encode(heartbeat)

    async def tick(self) -> None:
        """Read and publish once (the reader runs in a thread: NVML calls block)."""
        built = await asyncio.to_thread(self.build)
        if built is None:
            return
        subject, body = built
        await self.publish(subject, body)
        self.sent += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every interval until ``stop`` is set (missed ticks are skipped, not bunched)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("agent_tick_failed", node_id=self.node_id, seq=self.seq)
            next_at += self.interval_s
            now = loop.time()
            next_at = max(next_at, now)
            try:
                await asyncio.wait_for(stop.wait(), timeout=next_at - now)
            except TimeoutError:
                continue
