"""The demo's three tenants and their set-up over NATS.

| tenant | residency | priorities | currency |
|---|---|---|---|
| ``eu-bank`` | EU only (and a dedicated node) | critical, standard | EUR |
| ``us-health`` | US only | standard, preemptible | USD |
| ``global-ai`` | anywhere | preemptible, standard | USD |

Set-up: a scheduler quota for each (any model), a key ring ``datasets`` whose policy
allows the tenant's sites (and the scheduler as a caller), and - when the billing
service runs - an account in the tenant's currency and a rate card in EUR and USD.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from nats.aio.client import Client

from aifactory.bus.rpc import request
from aifactory.bus.settings import Namespace
from aifactory.contracts.billing.v1 import Account, RateView, SetAccount, SetRate
from aifactory.contracts.jobs.v1 import PriorityClass, SetQuota, TenantQuota
from aifactory.contracts.keys.v1 import Caller, CreateKey, KeyDescription, KeyPolicy

ACTOR = "operator:demo"
KEY_ID = "datasets"
QUOTA = 100_000
SCHEDULER_PRINCIPAL = "service:scheduling"
SETUP_TIMEOUT_S = 30.0

ACCELERATOR_HOUR: dict[str, dict[PriorityClass, Decimal]] = {
    "H200": {
        "critical": Decimal("6.40"),
        "standard": Decimal("4.20"),
        "preemptible": Decimal("1.90"),
    },
    "B200": {
        "critical": Decimal("8.10"),
        "standard": Decimal("5.60"),
        "preemptible": Decimal("2.50"),
    },
}
NODE_HOUR = {"H200": Decimal("30.00"), "B200": Decimal("42.00")}
CURRENCIES = ("EUR", "USD")


@dataclass(frozen=True, slots=True)
class DemoTenant:
    """A tenant of the demo and the shape of its workload."""

    tenant: str
    name: str
    residency: tuple[str, ...]
    """Jurisdictions its jobs and keys may use (empty: anywhere)."""
    priorities: tuple[tuple[PriorityClass, float], ...]
    """Priority classes and their share of its jobs."""
    currency: str
    share: float
    """Its share of all submitted jobs."""

    @property
    def where(self) -> str:
        """Residency in words."""
        return " or ".join(self.residency) + " only" if self.residency else "anywhere"


TENANTS: tuple[DemoTenant, ...] = (
    DemoTenant("eu-bank", "EU Bank", ("EU",), (("critical", 0.2), ("standard", 0.8)), "EUR", 0.35),
    DemoTenant(
        "us-health", "US Health", ("US",), (("standard", 0.6), ("preemptible", 0.4)), "USD", 0.30
    ),
    DemoTenant(
        "global-ai", "Global AI", (), (("preemptible", 0.7), ("standard", 0.3)), "USD", 0.35
    ),
)
DEDICATED_TENANT = "eu-bank"
REVOKED_TENANT = "us-health"


def key_policy(tenant: DemoTenant) -> KeyPolicy:
    """The ``datasets`` key's policy: the tenant's jurisdictions; the tenant and the scheduler."""
    return KeyPolicy(
        allowed_jurisdictions=list(tenant.residency or ("EU", "US")),
        allowed_callers=[f"tenant:{tenant.tenant}", SCHEDULER_PRINCIPAL],
    )


async def set_up_tenants(
    nc: Client, namespace: Namespace, tenants: tuple[DemoTenant, ...], *, caller_site: str
) -> None:
    """Quotas and key rings for ``tenants`` (idempotent)."""
    caller = Caller(principal=ACTOR, site=caller_site)
    for tenant in tenants:
        await request(
            nc,
            SetQuota(tenant=tenant.tenant, model="*", accelerators=QUOTA, actor=ACTOR),
            TenantQuota,
            namespace=namespace,
            timeout=SETUP_TIMEOUT_S,
        )
        await request(
            nc,
            CreateKey(
                tenant=tenant.tenant, key_id=KEY_ID, policy=key_policy(tenant), caller=caller
            ),
            KeyDescription,
            namespace=namespace,
            timeout=SETUP_TIMEOUT_S,
        )


async def set_up_billing(
    nc: Client,
    namespace: Namespace,
    tenants: tuple[DemoTenant, ...],
    *,
    effective_from: dt.datetime,
) -> None:
    """Accounts for ``tenants`` and the rate card in every currency (idempotent)."""
    for tenant in tenants:
        await request(
            nc,
            SetAccount(
                tenant=tenant.tenant, currency=tenant.currency, name=tenant.name, actor=ACTOR
            ),
            Account,
            namespace=namespace,
            timeout=SETUP_TIMEOUT_S,
        )
    for currency in CURRENCIES:
        for model, prices in ACCELERATOR_HOUR.items():
            for priority, price in prices.items():
                await request(
                    nc,
                    SetRate(
                        kind="accelerator_hour",
                        model=model,
                        priority=priority,
                        unit_price=price,
                        currency=currency,
                        effective_from=effective_from,
                        actor=ACTOR,
                    ),
                    RateView,
                    namespace=namespace,
                    timeout=SETUP_TIMEOUT_S,
                )
            await request(
                nc,
                SetRate(
                    kind="node_hour",
                    model=model,
                    unit_price=NODE_HOUR[model],
                    currency=currency,
                    effective_from=effective_from,
                    actor=ACTOR,
                ),
                RateView,
                namespace=namespace,
                timeout=SETUP_TIMEOUT_S,
            )
