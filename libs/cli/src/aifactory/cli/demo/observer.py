"""What the demo's live view shows, gathered from the factory over NATS.

Two sources: a subscription to every factory subject (``factory.>`` in the namespace),
counting messages per second and turning the events that matter into timeline lines
(a node's health verdict or admin state changing, a key revoked); and queries polled
every second - inventory's capacity, the scheduler's queue with reasons
(``ExplainQueue``) and the health service's verdicts. A query that fails keeps the
last answer and says so; the demo never stops because a view is stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import Namespace
from aifactory.cli.demo.faults import FaultTimeline
from aifactory.contracts.base import Contract
from aifactory.contracts.errors import ContractError
from aifactory.contracts.health.v1 import ListNodeHealth, NodeHealthChanged, NodeHealthPage
from aifactory.contracts.inventory.v1 import CapacityReport, GetCapacity, NodeStateChanged
from aifactory.contracts.jobs.v1 import ExplainQueue, QueueExplanation
from aifactory.contracts.keys.v1 import KeyRevoked

R = TypeVar("R", bound=Contract)
POLL_S = 1.0
QUERY_TIMEOUT_S = 3.0
RATE_WINDOW_S = 5.0

_health_changed = msgspec.json.Decoder(NodeHealthChanged)
_state_changed = msgspec.json.Decoder(NodeStateChanged)
_key_revoked = msgspec.json.Decoder(KeyRevoked)


@dataclass
class Snapshot:
    """The latest answers of the polled queries."""

    capacity: CapacityReport | None = None
    queue: QueueExplanation | None = None
    health: NodeHealthPage | None = None
    stale: set[str] = field(default_factory=set)


class Observer:
    """Counts the factory's messages, notes its reactions, polls its state."""

    def __init__(self, nc: Client, namespace: Namespace, timeline: FaultTimeline) -> None:
        self.nc = nc
        self.namespace = namespace
        self.timeline = timeline
        self.snapshot = Snapshot()
        self.messages = 0
        self.events = 0
        self.by_kind: Counter[str] = Counter()
        self._samples: deque[tuple[float, int, int]] = deque()
        self._subscription: Subscription | None = None
        self._prefix_tokens = len(namespace.subject("factory").split(".")) - 1

    async def start(self) -> None:
        """Subscribe to every factory subject."""
        self._subscription = await self.nc.subscribe(
            self.namespace.subject("factory.>"), cb=self._on_message, pending_msgs_limit=500_000
        )

    async def close(self) -> None:
        """Unsubscribe."""
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _on_message(self, msg: Msg) -> None:
        self.messages += 1
        tokens = msg.subject.split(".")[self._prefix_tokens :]
        kind = tokens[3] if len(tokens) > 3 else "?"
        self.by_kind[kind] += 1
        if kind != "evt":
            return
        self.events += 1
        name = tokens[4] if len(tokens) > 4 else ""
        try:
            if name == "node_health_changed":
                changed = _health_changed.decode(msg.data)
                why = ", ".join(reason.code for reason in changed.reasons) or "-"
                self.timeline.note(
                    f"health: {changed.node_id} {changed.previous_verdict or 'new'} -> "
                    f"{changed.verdict} ({why})"
                )
            elif name == "node_state_changed":
                state = _state_changed.decode(msg.data)
                self.timeline.note(
                    f"inventory: {state.node_id} {state.from_state} -> {state.to_state}"
                )
            elif name == "key_revoked":
                revoked = _key_revoked.decode(msg.data)
                self.timeline.note(f"keys: key_revoked event for {revoked.tenant}/{revoked.key_id}")
        except msgspec.DecodeError:
            return

    def rates(self) -> tuple[float, float]:
        """Messages and events per second over the last few seconds."""
        now = time.monotonic()
        self._samples.append((now, self.messages, self.events))
        while len(self._samples) > 2 and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()
        first_at, first_messages, first_events = self._samples[0]
        span = now - first_at
        if span <= 0:
            return 0.0, 0.0
        return (self.messages - first_messages) / span, (self.events - first_events) / span

    async def _ask(self, what: str, query: Contract, reply: type[R]) -> R | None:
        try:
            answer = await request(
                self.nc,
                query,
                reply,
                namespace=self.namespace,
                timeout=QUERY_TIMEOUT_S,
                responder_wait=0.5,
            )
        except (CommandFailed, ServiceUnavailable, ContractError):
            self.snapshot.stale.add(what)
            return None
        self.snapshot.stale.discard(what)
        return answer

    async def poll_once(self) -> None:
        """Ask capacity, queue and health once, concurrently."""
        capacity, queue, health = await asyncio.gather(
            self._ask("capacity", GetCapacity(), CapacityReport),
            self._ask("queue", ExplainQueue(limit=8), QueueExplanation),
            self._ask("health", ListNodeHealth(limit=1000), NodeHealthPage),
        )
        self.snapshot.capacity = capacity or self.snapshot.capacity
        self.snapshot.queue = queue or self.snapshot.queue
        self.snapshot.health = health or self.snapshot.health

    async def poll(self, stop: asyncio.Event) -> None:
        """Poll every second until ``stop``."""
        while not stop.is_set():
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=POLL_S)
