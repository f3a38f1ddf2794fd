"""Durable JetStream consumers with exactly-once effects and dead letters.

``EventConsumer`` pulls batches from a durable pull consumer and, per batch:

1. reads each message (CloudEvents headers, registered ``ce-type`` accepted by this
   consumer, size limit, body decode); anything unreadable - malformed bytes, a
   wrong or unknown ``ce-type``, a missing ``ce-id``, unknown fields, absurd values,
   an oversized body - is dead-lettered and terminated at once;
2. in ONE database transaction: claims the event ids in the inbox, skipping those
   this consumer already applied,
   runs the handler of each new event, writes the events the handlers return to the
   outbox and marks the consumed ids in the inbox;
3. acknowledges the messages only after that transaction committed.

A crash after commit and before the ack means a redelivery, which the inbox turns
into a no-op. When a handler raises, the batch's transaction is rolled back and the
batch is replayed one message per transaction, so only the failing message is
affected: it is negatively acknowledged with a backoff delay and retried until the
consumer's ``max_deliver``, then dead-lettered with its reason and terminated. A
poison message never blocks the messages behind it.

When a NATS server of a cluster goes away, fetching fails for a moment (no responders
while the client reconnects or the consumer's leader is re-elected): the loop logs it
and fetches again with a short backoff instead of ending. Failures that go on for
``fetch_give_up_s`` (default 5 minutes: the consumer was deleted, the stream is gone,
NATS stays away) end the loop with ``ConsumerStalled``, so the service exits with
status 1 and its supervisor restarts it (which provisions the consumer again), rather
than reporting ready while consuming nothing.

Two handler shapes share this machinery: per-message handlers (a mapping from
contract class to ``async (envelope, uow) -> events``) and a batch handler
(``async (envelopes, uow) -> events``) for high-rate subjects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext

from aifactory.bus.context import event_context, headers_context
from aifactory.bus.deadletter import DeadLetterPublisher
from aifactory.bus.settings import Namespace
from aifactory.bus.topology import ConsumerSpec
from aifactory.contracts.base import Contract
from aifactory.contracts.envelope import DEFAULT_MAX_BODY_BYTES, Envelope, read_message
from aifactory.contracts.errors import ContractError
from aifactory.contracts.registry import spec_of
from aifactory.observability.metrics import ServiceMetrics
from aifactory.store.store import Store
from aifactory.store.uow import NewEvent, UnitOfWork

log = structlog.get_logger(__name__)

Emitted = Iterable[NewEvent | Contract] | None
EventHandler = Callable[[Envelope[Any], UnitOfWork], Awaitable[Emitted]]
BatchHandler = Callable[[Sequence[Envelope[Any]], UnitOfWork], Awaitable[Emitted]]

DEFAULT_BACKOFF_S: tuple[float, ...] = (0.5, 2.0, 5.0, 15.0, 30.0)
FETCH_RETRY_S: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.0)
"""Pauses before fetching again after a failed fetch (a server or leader is failing over)."""
FETCH_GIVE_UP_S = 300.0
"""How long fetches may keep failing before the consumer gives up (``ConsumerStalled``)."""


class ConsumerStalled(RuntimeError):
    """Fetching from a durable consumer kept failing for longer than allowed."""


@dataclass
class ConsumerStats:
    """Counters of what a consumer did (also exported as Prometheus metrics)."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    redelivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    handler_seconds: float = 0.0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


def delivery_count(msg: Msg) -> int:
    """How many times JetStream delivered ``msg``, read from its ack subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>``, or the
    longer form with domain and account hash before the stream (12+ tokens); cheaper
    than building ``msg.metadata`` for every message.
    """
    tokens = (msg.reply or "").split(".")
    if len(tokens) >= 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        index = 4 if len(tokens) == 9 else 6
        if tokens[index].isdigit():
            return int(tokens[index])
    return int(msg.metadata.num_delivered)


@dataclass(frozen=True, slots=True)
class _Readable:
    msg: Msg
    envelope: Envelope[Any]


class EventConsumer:
    """Consumes one durable pull consumer into a service's store."""

    def __init__(
        self,
        *,
        js: JetStreamContext,
        store: Store,
        spec: ConsumerSpec,
        dead_letters: DeadLetterPublisher,
        namespace: Namespace,
        handlers: Mapping[type[Contract], EventHandler] | None = None,
        batch_handler: BatchHandler | None = None,
        accept: Iterable[type[Contract]] = (),
        batch_size: int = 256,
        fetch_timeout_s: float = 1.0,
        backoff_s: Sequence[float] = DEFAULT_BACKOFF_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        use_inbox: bool = True,
        fetch_give_up_s: float = FETCH_GIVE_UP_S,
        after_commit: Callable[[], None] | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        if (handlers is None) == (batch_handler is None):
            raise ValueError("give either per-message handlers or one batch_handler")
        self.js = js
        self.store = store
        self.spec = spec
        self.namespace = namespace
        self.dead_letters = dead_letters
        self.batch_handler = batch_handler
        self.handlers = {spec_of(t).ce_type: h for t, h in (handlers or {}).items()}
        accepted = set(self.handlers) | {spec_of(t).ce_type for t in accept}
        if batch_handler is not None and not accepted:
            raise ValueError("a batch consumer must list the contract types it accepts")
        self.accept = frozenset(accepted)
        self.batch_size = batch_size
        self.fetch_timeout_s = fetch_timeout_s
        self.backoff_s = tuple(backoff_s) or (1.0,)
        self.max_body_bytes = max_body_bytes
        self.use_inbox = use_inbox
        self.fetch_give_up_s = fetch_give_up_s
        self.after_commit = after_commit
        self.name = namespace.stream(spec.durable)
        self.stats = ConsumerStats()
        self.metrics = metrics
        if metrics is not None:
            self._consumed_metric = metrics.consumed(spec.durable)
            self._redelivered_metric = metrics.redelivered(spec.durable)
            self._latency_metric = metrics.handler_seconds(spec.durable)

    # ------------------------------------------------------------------ loop
    async def run(self, *, ready: asyncio.Event | None = None) -> None:
        """Fetch and process batches until cancelled."""
        subscription = await self.js.pull_subscribe_bind(
            durable=self.name, stream=self.namespace.stream(self.spec.stream)
        )
        if ready is not None:
            ready.set()
        failures = 0
        failing_since = 0.0
        try:
            while True:
                try:
                    msgs = await subscription.fetch(self.batch_size, timeout=self.fetch_timeout_s)
                except (NatsTimeoutError, TimeoutError):
                    # On Python 3.11 a cancel racing the fetch timeout can surface as
                    # TimeoutError: honour it instead of polling on.
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise asyncio.CancelledError from None
                    msgs = []
                except ConnectionClosedError:
                    raise  # closed for good (the service is stopping): nothing to wait for
                except NatsError as exc:
                    # nats.js errors derive from nats.errors.Error too: no responders,
                    # 503 while the consumer's leader is re-elected, a reconnect.
                    now = time.monotonic()
                    if failures == 0:
                        failing_since = now
                    elif now - failing_since > self.fetch_give_up_s:
                        raise ConsumerStalled(
                            f"{self.name}: fetching has failed for {now - failing_since:.0f}s "
                            f"({failures} tries), last error {exc!r}"
                        ) from exc
                    pause = FETCH_RETRY_S[min(failures, len(FETCH_RETRY_S) - 1)]
                    failures += 1
                    log.warning(
                        "consumer_fetch_failed_will_retry",
                        consumer=self.name,
                        error=repr(exc),
                        failures=failures,
                        retry_in_s=pause,
                    )
                    await asyncio.sleep(pause)
                    continue
                if failures:
                    log.info("consumer_fetch_recovered", consumer=self.name, failures=failures)
                    failures = 0
                if msgs:
                    await self.process_batch(msgs)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    # ------------------------------------------------------------------ batch
    async def process_batch(self, msgs: Sequence[Msg]) -> None:
        """Read, apply and acknowledge one fetched batch (see module docstring)."""
        self.stats.received += len(msgs)
        readable: list[_Readable] = []
        for msg in msgs:
            if delivery_count(msg) > 1:
                self.stats.redelivered += 1
                if self.metrics is not None:
                    self._redelivered_metric.inc()
            try:
                envelope = read_message(
                    msg.headers, msg.data, accept=self.accept, max_body_bytes=self.max_body_bytes
                )
            except ContractError as exc:
                await self._give_up(msg, exc)
                continue
            readable.append(_Readable(msg, envelope))
        if not readable:
            return
        try:
            await self._apply(readable)
        except Exception as exc:  # noqa: BLE001 - any handler failure isolates the batch
            if len(readable) == 1:
                await self._retry_or_give_up(readable[0].msg, exc)
            else:
                log.info("batch_failed_replaying_singly", consumer=self.name, size=len(readable))
                for item in readable:
                    try:
                        await self._apply([item])
                    except Exception as single_exc:  # noqa: BLE001 - see above
                        await self._retry_or_give_up(item.msg, single_exc)

    async def _apply(self, items: Sequence[_Readable]) -> None:
        """Apply ``items`` in one transaction, then acknowledge them."""
        started = time.perf_counter()
        async with self.store.unit_of_work() as uow:
            fresh = await self._fresh(items, uow)
            if fresh:
                if self.batch_handler is not None:
                    emitted = await self.batch_handler([i.envelope for i in fresh], uow)
                    uow.emit_all(emitted or (), caused_by=fresh[0].envelope.event)
                else:
                    for item in fresh:
                        handler = self.handlers[item.envelope.event.type]
                        with event_context(item.envelope.event):
                            emitted = await handler(item.envelope, uow)
                        uow.emit_all(emitted or (), caused_by=item.envelope.event)
        elapsed = time.perf_counter() - started
        self.stats.handler_seconds += elapsed
        self.stats.applied += len(fresh)
        if self.metrics is not None:
            self._latency_metric.observe(elapsed)
            self._consumed_metric.inc(len(items))
        self.stats.duplicates += len(items) - len(fresh)
        if fresh and self.after_commit is not None:
            self.after_commit()
        for item in items:
            await item.msg.ack()

    async def _fresh(self, items: Sequence[_Readable], uow: UnitOfWork) -> list[_Readable]:
        """The items not applied before (inbox) and not repeated within the batch."""
        seen_here: set[str] = set()
        unique: list[_Readable] = []
        for item in items:
            event_id = item.envelope.event.id
            if event_id not in seen_here:
                seen_here.add(event_id)
                unique.append(item)
        if not self.use_inbox:
            return unique
        # One INSERT ... ON CONFLICT DO NOTHING RETURNING claims the new ids in this
        # transaction (undone with it on rollback) and tells which were new.
        claimed = await uow.claim(self.name, seen_here)
        return [item for item in unique if item.envelope.event.id in claimed]

    # ------------------------------------------------------------------ failures
    async def _retry_or_give_up(self, msg: Msg, error: BaseException) -> None:
        delivered = delivery_count(msg)
        with headers_context(msg.headers):
            if delivered >= self.spec.max_deliver:
                await self._give_up(msg, error)
                return
            delay = self.backoff_s[min(delivered, len(self.backoff_s)) - 1]
            self.stats.retried += 1
            log.warning(
                "handler_failed_will_retry",
                consumer=self.name,
                subject=msg.subject,
                error_class=type(error).__name__,
                error=str(error),
                delivery=delivered,
                max_deliver=self.spec.max_deliver,
                retry_in_s=delay,
            )
            await msg.nak(delay=delay)

    async def _give_up(self, msg: Msg, error: BaseException) -> None:
        with headers_context(msg.headers):
            try:
                await self.dead_letters.dead_letter(msg, error, consumer=self.name)
            except Exception as dlq_error:
                log.exception(
                    "dead_letter_failed_will_retry",
                    consumer=self.name,
                    subject=msg.subject,
                    error=repr(dlq_error),
                    original_error=repr(error),
                )
                await msg.nak(delay=self.backoff_s[-1])
                return
        await msg.term()
        self.stats.dead_lettered += 1
        reason = type(error).__name__
        self.stats.dead_letter_reasons[reason] = self.stats.dead_letter_reasons.get(reason, 0) + 1
        if self.metrics is not None:
            self.metrics.dead_lettered(self.spec.durable, reason).inc()
