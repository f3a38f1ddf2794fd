"""aifactory's versioned message contracts.

Depends only on msgspec and the standard library so integrators can use it alone.
See docs/contracts.md for the subject scheme, CloudEvents mapping and evolution rules.
"""

from aifactory.contracts.base import Contract
from aifactory.contracts.cloudevents import CloudEvent, new_event_id, new_traceparent, parse_headers
from aifactory.contracts.envelope import (
    DEFAULT_MAX_BODY_BYTES,
    Envelope,
    OutgoingMessage,
    build_message,
    encode_body,
    read_message,
)
from aifactory.contracts.errors import (
    ContractError,
    InvalidCloudEvent,
    OversizedBody,
    UndecodableBody,
    UnknownMessageType,
)
from aifactory.contracts.registry import REGISTRY, MessageSpec, Registry, message, spec_of
from aifactory.contracts.replies import ERROR_REPLY_TYPE, ErrorCode, ErrorReply

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "ERROR_REPLY_TYPE",
    "REGISTRY",
    "CloudEvent",
    "Contract",
    "ContractError",
    "Envelope",
    "ErrorCode",
    "ErrorReply",
    "InvalidCloudEvent",
    "MessageSpec",
    "OutgoingMessage",
    "OversizedBody",
    "Registry",
    "UndecodableBody",
    "UnknownMessageType",
    "build_message",
    "encode_body",
    "message",
    "new_event_id",
    "new_traceparent",
    "parse_headers",
    "read_message",
    "spec_of",
]
