"""Turning a contract into a NATS message and back.

``build_message`` gives the subject, CloudEvents headers and JSON body of a contract;
``read_message`` validates headers, looks the ``ce-type`` up in the registry, checks
the size and decodes the body into the registered Struct. Both are pure functions:
no I/O, so any transport (and any test) can use them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

from aifactory.contracts.base import Contract
from aifactory.contracts.cloudevents import (
    CloudEvent,
    new_event_id,
    new_traceparent,
    parse_headers,
    utcnow,
)
from aifactory.contracts.errors import OversizedBody, UnknownMessageType
from aifactory.contracts.registry import REGISTRY, MessageSpec, Registry

C = TypeVar("C", bound=Contract)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""Bodies above this size are refused (NATS' own default max_payload is 1 MiB)."""

_encoder = msgspec.json.Encoder()


def encode_body(data: Contract) -> bytes:
    """The JSON body of a contract."""
    return _encoder.encode(data)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message ready to publish: subject, headers and body."""

    subject: str
    headers: dict[str, str]
    body: bytes
    event: CloudEvent


@dataclass(frozen=True, slots=True)
class Envelope(Generic[C]):
    """A received message: its CloudEvents attributes, decoded payload and registry entry."""

    event: CloudEvent
    data: C
    spec: MessageSpec


def build_message(
    data: Contract,
    *,
    source: str,
    tenant: str | None = None,
    scope: str | None = None,
    subject: str | None = None,
    event_id: str | None = None,
    time: dt.datetime | None = None,
    traceparent: str | None = None,
    registry: Registry = REGISTRY,
) -> OutgoingMessage:
    """Build the NATS message of ``data``.

    ``scope`` is the subject's scope token; for tenant-scoped messages it defaults to
    ``tenant``. ``subject`` is the CloudEvents ``subject`` (what the event is about,
    e.g. a node id), not the NATS subject.
    """
    spec = registry.spec_for(type(data))
    if scope is None and spec.scope == "tenant":
        scope = tenant
    event = CloudEvent(
        id=event_id or new_event_id(),
        source=source,
        type=spec.ce_type,
        time=time or utcnow(),
        subject=subject,
        dataschema=spec.schema_id,
        tenant=tenant,
        traceparent=traceparent or new_traceparent(),
    )
    return OutgoingMessage(
        subject=spec.subject(scope),
        headers=event.to_headers(),
        body=encode_body(data),
        event=event,
    )


def read_message(
    headers: Mapping[str, str] | None,
    body: bytes | memoryview,
    *,
    accept: Collection[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    registry: Registry = REGISTRY,
) -> Envelope[Contract]:
    """Validate and decode a received message.

    ``accept`` limits the CloudEvents types this reader takes (a consumer's own
    subscriptions); anything else raises ``UnknownMessageType``. Raises a
    ``ContractError`` subclass for every kind of bad input.
    """
    event = parse_headers(headers)
    if accept is not None and event.type not in accept:
        raise UnknownMessageType(event.type, tuple(sorted(accept)))
    spec = registry.by_ce_type(event.type)
    if len(body) > max_body_bytes:
        raise OversizedBody(len(body), max_body_bytes)
    return Envelope(event=event, data=spec.decode(body), spec=spec)
