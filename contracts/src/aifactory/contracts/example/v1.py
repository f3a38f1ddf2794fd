"""Example contracts, version 1: one event and one command with its reply.

They exist so the foundation can be tested end to end before any real domain; they
also show how a domain module is written. Real services add their own modules beside
this one (``aifactory.contracts.<domain>.v<N>``) and list them in ``catalog``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from aifactory.contracts.base import Contract
from aifactory.contracts.registry import message

WidgetId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")]
TenantId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")]


@message(domain="example", name="widget_registered", version=1, kind="evt", scope="tenant")
class WidgetRegistered(Contract, frozen=True, kw_only=True):
    """A widget was registered for a tenant."""

    widget_id: WidgetId
    tenant: TenantId
    size: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    label: str = ""


class WidgetRegistration(Contract, frozen=True, kw_only=True):
    """Reply to ``RegisterWidget``: the widget id and whether it was new."""

    widget_id: WidgetId
    created: bool


@message(
    domain="example",
    name="register_widget",
    version=1,
    kind="cmd",
    reply=WidgetRegistration,
)
class RegisterWidget(Contract, frozen=True, kw_only=True):
    """Register a widget (idempotent on widget id)."""

    widget_id: WidgetId
    tenant: TenantId
    size: Annotated[int, msgspec.Meta(ge=1, le=1000)]
