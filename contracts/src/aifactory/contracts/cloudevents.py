"""CloudEvents 1.0 in the NATS protocol binding's *binary content mode*.

Attributes travel as ``ce-*`` headers; the body is the msgspec-encoded contract with
``content-type: application/json``. Two extensions are used, mapped as the binding says
(``ce-`` + name): ``ce-tenant`` (the owning tenant, when there is one) and
``ce-traceparent`` (W3C Trace Context; also written as the bare ``traceparent`` header
that W3C propagators read, and either is accepted). ``ce-id`` is also
sent as ``Nats-Msg-Id`` so JetStream drops a re-publication of the same event.

``parse_headers`` validates: a missing or garbled required attribute raises
``InvalidCloudEvent`` naming the attribute, never ``KeyError``.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from aifactory.contracts.errors import InvalidCloudEvent

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

H_SPECVERSION = "ce-specversion"
H_ID = "ce-id"
H_SOURCE = "ce-source"
H_TYPE = "ce-type"
H_TIME = "ce-time"
H_SUBJECT = "ce-subject"
H_DATASCHEMA = "ce-dataschema"
H_TENANT = "ce-tenant"
H_TRACEPARENT = "ce-traceparent"
H_W3C_TRACEPARENT = "traceparent"  # also written, for W3C propagators that read the bare header
H_CONTENT_TYPE = "content-type"
H_NATS_MSG_ID = "Nats-Msg-Id"

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_MAX_ATTRIBUTE_LENGTH = 512


def new_event_id() -> str:
    """A fresh, globally unique CloudEvents id."""
    return str(uuid.uuid4())


def new_traceparent(trace_id: str | None = None) -> str:
    """A W3C traceparent with a new span id (and a new trace id unless one is given)."""
    return f"00-{trace_id or secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def trace_id_of(traceparent: str) -> str | None:
    """The trace id inside a traceparent, or ``None`` if it is not a valid one."""
    match = _TRACEPARENT.match(traceparent)
    return match.group(1) if match else None


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """The CloudEvents context attributes of one message."""

    id: str
    source: str
    type: str
    time: dt.datetime | None = None
    subject: str | None = None
    dataschema: str | None = None
    tenant: str | None = None
    traceparent: str | None = None
    specversion: str = SPECVERSION

    def to_headers(self) -> dict[str, str]:
        """NATS headers for binary content mode, including ``Nats-Msg-Id``."""
        headers = {
            H_SPECVERSION: self.specversion,
            H_ID: self.id,
            H_SOURCE: self.source,
            H_TYPE: self.type,
            H_CONTENT_TYPE: CONTENT_TYPE,
            H_NATS_MSG_ID: self.id,
        }
        if self.time is not None:
            headers[H_TIME] = format_time(self.time)
        if self.subject is not None:
            headers[H_SUBJECT] = self.subject
        if self.dataschema is not None:
            headers[H_DATASCHEMA] = self.dataschema
        if self.tenant is not None:
            headers[H_TENANT] = self.tenant
        if self.traceparent is not None:
            headers[H_TRACEPARENT] = self.traceparent
            headers[H_W3C_TRACEPARENT] = self.traceparent
        return headers

    @property
    def trace_id(self) -> str | None:
        """The W3C trace id this event belongs to, if it carries a traceparent."""
        return trace_id_of(self.traceparent) if self.traceparent else None


def format_time(moment: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix, as ``ce-time`` carries it."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise InvalidCloudEvent(name, "is missing")
    value = value.strip()
    if not value:
        raise InvalidCloudEvent(name, "is empty")
    if len(value) > _MAX_ATTRIBUTE_LENGTH:
        raise InvalidCloudEvent(name, f"is longer than {_MAX_ATTRIBUTE_LENGTH} characters")
    return value


def _optional(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None or not value.strip():
        return None
    if len(value) > _MAX_ATTRIBUTE_LENGTH:
        raise InvalidCloudEvent(name, f"is longer than {_MAX_ATTRIBUTE_LENGTH} characters")
    return value.strip()


def _parse_time(raw: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidCloudEvent(H_TIME, f"is not an RFC 3339 timestamp: {raw!r}") from None
    if parsed.tzinfo is None:
        raise InvalidCloudEvent(H_TIME, f"has no timezone offset: {raw!r}")
    return parsed.astimezone(dt.UTC)


def parse_headers(headers: Mapping[str, str] | None) -> CloudEvent:
    """Read and validate CloudEvents attributes from NATS headers."""
    if not headers:
        raise InvalidCloudEvent(H_ID, "is missing (the message has no headers)")
    specversion = _required(headers, H_SPECVERSION)
    if specversion != SPECVERSION:
        raise InvalidCloudEvent(H_SPECVERSION, f"must be {SPECVERSION!r}, got {specversion!r}")
    content_type = _optional(headers, H_CONTENT_TYPE)
    if content_type is not None and content_type.split(";")[0].strip() != CONTENT_TYPE:
        raise InvalidCloudEvent(H_CONTENT_TYPE, f"must be {CONTENT_TYPE!r}, got {content_type!r}")
    raw_time = _optional(headers, H_TIME)
    traceparent = _optional(headers, H_TRACEPARENT) or _optional(headers, H_W3C_TRACEPARENT)
    if traceparent is not None and trace_id_of(traceparent) is None:
        raise InvalidCloudEvent(H_TRACEPARENT, f"is not a W3C traceparent: {traceparent!r}")
    return CloudEvent(
        id=_required(headers, H_ID),
        source=_required(headers, H_SOURCE),
        type=_required(headers, H_TYPE),
        time=_parse_time(raw_time) if raw_time else None,
        subject=_optional(headers, H_SUBJECT),
        dataschema=_optional(headers, H_DATASCHEMA),
        tenant=_optional(headers, H_TENANT),
        traceparent=traceparent,
        specversion=specversion,
    )
