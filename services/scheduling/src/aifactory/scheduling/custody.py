"""The key-custody gate: may a tenant's dataset key be used at a site?

``KeyCustody`` is the interface the scheduler asks; ``NatsKeyCustody`` (app.py) asks the keys
service (``describe_key`` as principal ``service:scheduling`` by default, which the
key's policy must list in ``allowed_callers``) and ``StaticKeyCustody`` answers from
a table (tests, and ``AIFACTORY_SCHEDULING_KEY_CUSTODY=off`` for a factory without
the keys service, where every key is usable everywhere). ``CachedKeyCustody`` keeps
answers for a while; key events (revoked, disabled, enabled, ...) invalidate them.

A key is usable at a site when it is ``enabled`` and its policy lists the site, or the
site's jurisdiction: inventory writes jurisdictions as ``EU/DE``, the keys service as
``EU`` or ``EU-DE``, so ``EU/DE`` matches a policy listing ``EU`` or ``EU-DE``.
Being revoked, disabled or destroyed is tracked from the keys service's events (see
engine.py); this gate answers the *where*.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol


class KeyCustodyUnavailable(Exception):
    """The keys service could not be asked (retry later)."""


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """What the scheduler needs to know about one dataset key."""

    state: str
    allowed_sites: frozenset[str] = frozenset()
    allowed_jurisdictions: frozenset[str] = frozenset()
    refusal: str = ""
    """Why the keys service refused to describe it (``key_not_found``, ...), if it did."""

    @property
    def known(self) -> bool:
        """Whether the key exists and the scheduler may read it."""
        return not self.refusal

    def usable_at(self, site_id: str, jurisdiction: str) -> bool:
        """Whether the key's policy allows use at this site."""
        if not self.known:
            return False
        if site_id in self.allowed_sites:
            return True
        parts = jurisdiction.split("/") if jurisdiction else []
        candidates = {parts[0], "-".join(parts[:2])} if parts else set()
        return bool(candidates & self.allowed_jurisdictions)


class KeyCustody(Protocol):
    """Answers whether a tenant's dataset key may be used, and where."""

    async def describe(self, tenant: str, key_id: str) -> KeyStatus:
        """The key's status and policy; ``KeyCustodyUnavailable`` when nobody can say."""
        ...


@dataclass
class StaticKeyCustody:
    """A fixed table of keys; unknown keys are usable everywhere when ``allow_unknown``."""

    keys: dict[tuple[str, str], KeyStatus] = field(default_factory=dict)
    allow_unknown: bool = False
    unavailable: bool = False

    async def describe(self, tenant: str, key_id: str) -> KeyStatus:
        """The table's answer."""
        if self.unavailable:
            raise KeyCustodyUnavailable("the key service is down (test double)")
        status = self.keys.get((tenant, key_id))
        if status is not None:
            return status
        if self.allow_unknown:
            return KeyStatus("enabled", allowed_sites=frozenset({"*"}))
        return KeyStatus("unknown", refusal="key_not_found")


class CachedKeyCustody:
    """Remembers answers for ``ttl_s`` seconds; ``forget`` drops one key's answer."""

    def __init__(
        self, inner: KeyCustody, *, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self.ttl_s = ttl_s
        self.clock = clock
        self._answers: dict[tuple[str, str], tuple[float, KeyStatus]] = {}

    async def describe(self, tenant: str, key_id: str) -> KeyStatus:
        """A remembered answer, or a fresh one."""
        now = self.clock()
        cached = self._answers.get((tenant, key_id))
        if cached is not None and cached[0] > now:
            return cached[1]
        status = await self.inner.describe(tenant, key_id)
        self._answers[(tenant, key_id)] = (now + self.ttl_s, status)
        return status

    def forget(self, tenant: str, key_id: str) -> None:
        """Drop what is known about a key (it changed)."""
        self._answers.pop((tenant, key_id), None)


def usable_sites(status: KeyStatus, sites: Mapping[str, str]) -> frozenset[str]:
    """The sites (id -> jurisdiction) where the key may be used."""
    if "*" in status.allowed_sites and status.known:
        return frozenset(sites)
    return frozenset(s for s, j in sites.items() if status.usable_at(s, j))
