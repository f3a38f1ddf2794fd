"""Why inventory refuses a request: the domain's exceptions, each with a typed error code.

Every refusal is an ``InventoryError`` carrying the ``ErrorReply`` code the caller
gets (``invalid_request``, ``not_found``, ``conflict``) and details such as the YAML
line of a bad factory description. Handlers raise them; the composition turns them
into typed error replies, so nothing is partially applied::

    InventoryError
    ├── DescriptionError     a factory description is malformed or inconsistent (names the line)
    ├── UnknownReference     a site, rack or node that inventory does not hold
    ├── HardwareConflict     a node id already registered with different hardware or site
    ├── DedicationConflict   a node dedication contradicts its rack's dedication
    └── InvalidTransition    an admin state change the state machine does not allow
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

ErrorCode = Literal["invalid_request", "not_found", "conflict"]


class InventoryError(Exception):
    """A request inventory refuses; ``code`` and ``details`` go into the error reply."""

    code: ErrorCode = "invalid_request"

    def __init__(self, message: str, details: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})


class DescriptionError(InventoryError):
    """A factory description has an error; ``line`` is its 1-based YAML line (0: unknown)."""

    def __init__(self, message: str, *, line: int = 0, path: str = "") -> None:
        where = f"line {line}: " if line else ""
        at = f"{path}: " if path else ""
        details = {"line": str(line)} if line else {}
        if path:
            details["path"] = path
        super().__init__(f"{where}{at}{message}", details)
        self.line = line
        self.path = path


class UnknownReference(InventoryError):
    """The request names a site, rack or node that inventory does not hold."""

    code: ErrorCode = "not_found"


class HardwareConflict(InventoryError):
    """A node id is already registered with different hardware (or at another site)."""

    code: ErrorCode = "conflict"


class DedicationConflict(InventoryError):
    """A dedication contradicts another (a node in a rack dedicated to someone else)."""

    code: ErrorCode = "conflict"


class InvalidTransition(InventoryError):
    """The admin state machine does not allow this change; the message says why."""

    code: ErrorCode = "conflict"
