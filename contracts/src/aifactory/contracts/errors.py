"""Errors raised while turning bytes and headers back into contracts.

Every failure to read a message is a ``ContractError`` subclass that names what is
wrong and, where it helps, what to do. Consumers catch ``ContractError`` to send the
message to a dead-letter subject instead of crashing::

    ContractError
    ├── InvalidCloudEvent        a required CloudEvents header is missing or garbled
    ├── UnknownMessageType       the ce-type is not a registered contract
    ├── UndecodableBody          the body is not valid JSON for the contract
    └── OversizedBody            the body is larger than the consumer accepts
"""

from __future__ import annotations


class ContractError(Exception):
    """A message could not be read as a registered aifactory contract."""


class InvalidCloudEvent(ContractError):
    """A CloudEvents attribute (header) is missing or has an invalid value."""

    def __init__(self, attribute: str, problem: str) -> None:
        self.attribute = attribute
        self.problem = problem
        super().__init__(f"CloudEvents attribute {attribute!r} {problem}")


class UnknownMessageType(ContractError):
    """The message's ``ce-type`` names no registered contract (or not the expected one)."""

    def __init__(self, ce_type: str, expected: tuple[str, ...] = ()) -> None:
        self.ce_type = ce_type
        self.expected = expected
        hint = f"; this consumer accepts {', '.join(expected)}" if expected else ""
        super().__init__(f"unknown message type {ce_type!r}{hint}")


class UndecodableBody(ContractError):
    """The body does not decode into the contract named by ``ce-type``."""

    def __init__(self, ce_type: str, reason: str) -> None:
        self.ce_type = ce_type
        self.reason = reason
        super().__init__(f"body does not decode as {ce_type}: {reason}")


class OversizedBody(ContractError):
    """The body is larger than the consumer accepts."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"body is {size} bytes, over the {limit}-byte limit")
