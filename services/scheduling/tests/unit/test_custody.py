"""The key-custody gate: where a key may be used, caching, invalidation."""

from __future__ import annotations

from aifactory.scheduling.custody import CachedKeyCustody, KeyStatus, StaticKeyCustody, usable_sites

SITES = {"fra1": "EU/DE", "par1": "EU/FR", "iad1": "US/VA"}


def test_sites_and_jurisdictions_of_the_policy_decide() -> None:
    """A policy listing a site allows it; listing EU or EU-DE allows sites under EU/DE."""
    assert usable_sites(KeyStatus("enabled", allowed_sites=frozenset({"iad1"})), SITES) == {"iad1"}
    eu = KeyStatus("enabled", allowed_jurisdictions=frozenset({"EU"}))
    assert usable_sites(eu, SITES) == {"fra1", "par1"}
    de = KeyStatus("enabled", allowed_jurisdictions=frozenset({"EU-DE"}))
    assert usable_sites(de, SITES) == {"fra1"}
    refused = KeyStatus("unknown", allowed_sites=frozenset({"fra1"}), refusal="key_not_found")
    assert usable_sites(refused, SITES) == frozenset()


async def test_cache_keeps_answers_until_they_expire_or_are_forgotten() -> None:
    """A cached answer is reused within its lifetime; forgetting a key asks again."""
    now = [0.0]
    inner = StaticKeyCustody(
        {("acme", "k"): KeyStatus("enabled", allowed_sites=frozenset({"fra1"}))}
    )
    cache = CachedKeyCustody(inner, ttl_s=10, clock=lambda: now[0])
    assert (await cache.describe("acme", "k")).state == "enabled"
    inner.keys[("acme", "k")] = KeyStatus("disabled")
    assert (await cache.describe("acme", "k")).state == "enabled"
    cache.forget("acme", "k")
    assert (await cache.describe("acme", "k")).state == "disabled"
    inner.keys[("acme", "k")] = KeyStatus("enabled")
    now[0] = 11.0
    assert (await cache.describe("acme", "k")).state == "enabled"
