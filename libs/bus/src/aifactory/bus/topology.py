"""JetStream topology as code: the factory's streams and durable consumers.

This is the one place that declares them. Streams follow the contracts registry:
every domain that has events (``evt``) or audit records (``audit``) gets a stream
``FACTORY_<DOMAIN>`` holding ``factory.<domain>.*.evt.>`` and
``factory.<domain>.*.audit.>`` (all major versions), and dead letters go to
``FACTORY_DLQ`` (``factory.dlq.>``). Commands, queries and telemetry are core NATS
and have no stream.

``provision`` makes the server match: it creates what is missing, updates streams
whose settings changed, and re-applies every durable consumer's configuration (a
changed ``max_deliver`` or ``ack_wait`` takes effect on restart, which FastStream
alone does not do). Running it twice changes nothing the second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, TypeVar

import structlog
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from aifactory.bus.settings import ROOT_NAMESPACE, BusSettings, Namespace
from aifactory.contracts.catalog import load_all
from aifactory.contracts.registry import Registry

log = structlog.get_logger(__name__)
T = TypeVar("T")

STREAM_KINDS = ("evt", "audit")
DLQ_STREAM = "FACTORY_DLQ"
DLQ_SUBJECT_ROOT = "factory.dlq"
PROVISION_RETRY_S: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Pauses between attempts of a JetStream API call the cluster could not serve yet."""
INSUFFICIENT_RESOURCES = 10023
"""JetStream's error code when too few servers are up for the replicas asked for."""


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """One JetStream stream."""

    name: str
    subjects: tuple[str, ...]
    description: str = ""
    max_age_s: float = 30 * 24 * 3600.0
    duplicate_window_s: float = 2 * 3600.0
    replicas: int = 1
    storage: Literal["file", "memory"] = "file"

    def config(self, namespace: Namespace) -> StreamConfig:
        """The nats-py stream configuration, names qualified by ``namespace``."""
        return StreamConfig(
            name=namespace.stream(self.name),
            description=self.description or None,
            subjects=[namespace.subject(s) for s in self.subjects],
            storage=StorageType.FILE if self.storage == "file" else StorageType.MEMORY,
            max_age=self.max_age_s,
            duplicate_window=self.duplicate_window_s,
            num_replicas=self.replicas,
        )


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """One durable pull consumer of a stream."""

    stream: str
    durable: str
    filter_subjects: tuple[str, ...]
    max_deliver: int = 5
    ack_wait_s: float = 30.0
    max_ack_pending: int = 20_000
    description: str = ""
    deliver_policy: Literal["all", "new"] = "all"

    def config(self, namespace: Namespace) -> ConsumerConfig:
        """The nats-py consumer configuration, names qualified by ``namespace``."""
        filters = [namespace.subject(s) for s in self.filter_subjects]
        return ConsumerConfig(
            durable_name=namespace.stream(self.durable),
            description=self.description or None,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL if self.deliver_policy == "all" else DeliverPolicy.NEW,
            ack_wait=self.ack_wait_s,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=filters if len(filters) > 1 else None,
        )


@dataclass(frozen=True, slots=True)
class Topology:
    """The streams and durable consumers a process needs."""

    streams: tuple[StreamSpec, ...]
    consumers: tuple[ConsumerSpec, ...] = field(default=())

    def with_consumers(self, *consumers: ConsumerSpec) -> Topology:
        """This topology plus more consumers."""
        return Topology(self.streams, self.consumers + consumers)

    def stream_for(self, subject: str) -> StreamSpec:
        """The stream that captures ``subject`` (a contract subject, unqualified)."""
        for stream in self.streams:
            if any(_subject_matches(pattern, subject) for pattern in stream.subjects):
                return stream
        raise LookupError(f"no stream captures subject {subject!r}")


def _subject_matches(pattern: str, subject: str) -> bool:
    p_tokens, s_tokens = pattern.split("."), subject.split(".")
    for i, part in enumerate(p_tokens):
        if part == ">":
            return len(s_tokens) > i
        if i >= len(s_tokens) or (part not in ("*", s_tokens[i])):
            return False
    return len(p_tokens) == len(s_tokens)


def factory_streams(
    settings: BusSettings, registry: Registry | None = None
) -> tuple[StreamSpec, ...]:
    """One stream per domain with events or audit records, plus the dead-letter stream.

    Without an explicit registry every contract module is loaded first, so any service
    provisions every domain's stream, not only the ones it happens to import.
    """
    registry = load_all() if registry is None else registry
    domains: dict[str, set[str]] = {}
    for spec in registry:
        if spec.kind in STREAM_KINDS and spec.subject_override is None:
            domains.setdefault(spec.domain, set()).add(spec.kind)
    streams = [
        StreamSpec(
            name=f"FACTORY_{domain.upper()}",
            subjects=tuple(f"factory.{domain}.*.{kind}.>" for kind in sorted(kinds)),
            description=f"aifactory {domain} events",
            max_age_s=settings.stream_max_age_s,
            duplicate_window_s=settings.duplicate_window_s,
            replicas=settings.stream_replicas,
        )
        for domain, kinds in sorted(domains.items())
    ]
    streams.append(
        StreamSpec(
            name=DLQ_STREAM,
            subjects=(f"{DLQ_SUBJECT_ROOT}.>",),
            description="aifactory dead letters: messages a consumer gave up on",
            max_age_s=settings.stream_max_age_s,
            duplicate_window_s=settings.duplicate_window_s,
            replicas=settings.stream_replicas,
        )
    )
    return tuple(streams)


def factory_topology(
    settings: BusSettings, consumers: Iterable[ConsumerSpec] = (), registry: Registry | None = None
) -> Topology:
    """The factory's streams (from the registry) plus the given consumers."""
    return Topology(factory_streams(settings, registry), tuple(consumers))


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    """What ``provision`` changed on the server."""

    created_streams: tuple[str, ...]
    updated_streams: tuple[str, ...]
    consumers: tuple[str, ...]


def _stream_differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    return (
        sorted(current.subjects or []) != sorted(wanted.subjects or [])
        or current.max_age != wanted.max_age
        or current.duplicate_window != wanted.duplicate_window
        or current.num_replicas != wanted.num_replicas
        or (current.description or None) != wanted.description
    )


def _transient(exc: BaseException) -> bool:
    """Whether a JetStream API failure may go away by itself (cluster forming / failing over).

    A server that answers "temporarily unavailable" (503), "insufficient resources" or
    not in time may be electing leaders. No answer at all (nats-py's
    ``ServiceUnavailableError`` without a code: no responders) means JetStream is not
    enabled there, which waiting does not fix.
    """
    if isinstance(exc, NatsTimeoutError | TimeoutError):
        return True
    if isinstance(exc, ServiceUnavailableError):
        return exc.code is not None
    if isinstance(exc, NotFoundError):
        return False
    return isinstance(exc, APIError) and exc.err_code == INSUFFICIENT_RESOURCES


async def _retrying(what: str, call: Callable[[], Awaitable[T]], retry_for_s: float) -> T:
    """``call()``, retried on transient JetStream failures for up to ``retry_for_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for_s
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            pause = PROVISION_RETRY_S[min(attempt, len(PROVISION_RETRY_S) - 1)]
            if not _transient(exc) or loop.time() + pause > deadline:
                raise
            attempt += 1
            log.warning("provision_retry", what=what, error=repr(exc), attempt=attempt)
            await asyncio.sleep(pause)


async def provision(
    js: JetStreamContext,
    topology: Topology,
    namespace: Namespace = ROOT_NAMESPACE,
    *,
    retry_for_s: float = 60.0,
) -> ProvisionReport:
    """Create or update every stream and durable consumer of ``topology``; idempotent."""
    created: list[str] = []
    updated: list[str] = []
    for stream in topology.streams:
        wanted = stream.config(namespace)
        name = wanted.name
        assert name is not None
        try:
            info = await _retrying(name, partial(js.stream_info, name), retry_for_s)
        except NotFoundError:
            # Another process may create it meanwhile: an identical add succeeds.
            await _retrying(name, partial(js.add_stream, wanted), retry_for_s)
            created.append(name)
            log.info("stream_created", stream=name, subjects=wanted.subjects)
            continue
        if _stream_differs(info.config, wanted):
            await _retrying(name, partial(js.update_stream, wanted), retry_for_s)
            updated.append(name)
            log.info("stream_updated", stream=name, subjects=wanted.subjects)
    consumers: list[str] = []
    for consumer in topology.consumers:
        stream_name = namespace.stream(consumer.stream)
        config = consumer.config(namespace)
        assert config.durable_name is not None
        # add_consumer with an existing durable name updates it in place.
        await _retrying(
            config.durable_name, partial(js.add_consumer, stream_name, config), retry_for_s
        )
        consumers.append(config.durable_name)
    return ProvisionReport(tuple(created), tuple(updated), tuple(consumers))


async def delete_streams(
    js: JetStreamContext, streams: Sequence[StreamSpec], namespace: Namespace
) -> None:
    """Delete the given streams if they exist (tests clean up with this)."""
    for stream in streams:
        try:
            await js.delete_stream(namespace.stream(stream.name))
        except NotFoundError:
            continue
