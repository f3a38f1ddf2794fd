"""The scheduler's refusals: an error code for the reply and details for the caller.

Use cases raise ``SchedulingError`` (or a subclass); the composition root turns it
into a typed ``ErrorReply`` for commands. ``UnknownJob`` raised while applying a
workload report makes the bus kit retry the event and then dead-letter it with this
message as the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from aifactory.contracts.replies import ErrorCode


class SchedulingError(Exception):
    """A command the scheduler refuses, with a stable code and details."""

    def __init__(
        self, code: ErrorCode, message: str, details: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.details = dict(details or {})


class JobRejected(SchedulingError):
    """A submitted job can never run here (``details["reason"]`` says why)."""

    def __init__(self, job_id: str, reason: str, message: str) -> None:
        super().__init__("invalid_request", message, {"reason": reason, "job_id": job_id})


class UnknownJob(Exception):
    """A workload report names a job the scheduler never had."""
