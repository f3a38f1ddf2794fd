"""The base class every aifactory message contract derives from.

Contracts are ``msgspec.Struct`` classes: immutable (``frozen``), keyword-only, and
strict about unknown fields so a malformed or mis-addressed payload is rejected with
a clear error instead of being half-read. Evolution rules (see docs/contracts.md):
new fields get defaults; a published field is never renamed, retyped or removed; a
breaking change is a new major version with its own subject, served beside the old.

msgspec applies ``kw_only`` only to the fields a class itself defines, and mypy reads
``frozen`` per class, so every contract repeats both::

    class NodeRegistered(Contract, frozen=True, kw_only=True): ...

The registry refuses a contract that is not frozen and keyword-only.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec

Timestamp = Annotated[dt.datetime, msgspec.Meta(tz=True)]
"""A timezone-aware instant (JSON Schema ``format: date-time``); use it for every time field."""


class Contract(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base for all message payloads: immutable, keyword-only, rejects unknown fields."""
