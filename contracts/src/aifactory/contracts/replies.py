"""The reply convention of commands and queries.

Every command or query has a typed reply (registered with it) and shares one typed
error reply, ``ErrorReply``. A reply carries the header ``ce-type`` naming which of
the two it is, so a caller in any language can always decode what comes back.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from aifactory.contracts.base import Contract

ERROR_REPLY_TYPE = "io.aifactory.error.v1"
ErrorCode = Literal[
    "invalid_request",  # the request did not decode or failed validation
    "unknown_request",  # no handler for this request type on this subject
    "unauthorized",  # the caller may not do this
    "not_found",  # the thing the request names does not exist
    "conflict",  # the request is valid but contradicts current state
    "unavailable",  # a dependency is down; retrying later may succeed
    "internal",  # the handler failed unexpectedly; the service kept running
]


class ErrorReply(Contract, frozen=True, kw_only=True):
    """Why a command or query failed: a stable code, a human message, structured details."""

    code: ErrorCode
    message: str
    details: dict[str, str] = msgspec.field(default_factory=dict)
