"""``NewEvent``: an event to publish with its routing attributes (no database needed)."""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.contracts.base import Contract


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event a handler wants published, with its routing attributes."""

    data: Contract
    tenant: str | None = None
    scope: str | None = None
    subject: str | None = None
