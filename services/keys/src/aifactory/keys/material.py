"""Unwrapped tenant key versions, cached in process memory.

A version's material is read from the repository, unwrapped by the root of trust
and kept as a ``TenantKey`` so the hot path does no database read or unwrap per
request. Whether a key may be used is decided from its ring (re-read for every
batch), never from this cache; destroying a key drops its versions here too.
"""

from __future__ import annotations

from aifactory.keys.crypto import RootOfTrust, TenantKey, tenant_key_binding
from aifactory.keys.domain import Refusal
from aifactory.keys.store import KeyRepository


class KeyMaterial:
    """Tenant key versions by (tenant, key id, version)."""

    def __init__(self, root: RootOfTrust, max_entries: int = 100_000) -> None:
        self.root = root
        self.max_entries = max_entries
        self._keys: dict[tuple[str, str, int], TenantKey] = {}

    def remember(self, tenant: str, key_id: str, version: int, material: bytes) -> TenantKey:
        """Cache a version just created (its wrapped form is being stored)."""
        if len(self._keys) >= self.max_entries:
            self._keys.clear()
        key = TenantKey(tenant, key_id, version, material)
        self._keys[(tenant, key_id, version)] = key
        return key

    async def version(
        self, repo: KeyRepository, tenant: str, key_id: str, version: int
    ) -> TenantKey:
        """The usable version, loaded and unwrapped on first use."""
        cached = self._keys.get((tenant, key_id, version))
        if cached is not None:
            return cached
        wrapped = await repo.wrapped_version(tenant, key_id, version)
        if wrapped is None:
            raise Refusal("key_destroyed", f"the material of version {version} of {key_id} is gone")
        material = self.root.unwrap(wrapped, tenant_key_binding(tenant, key_id, version))
        return self.remember(tenant, key_id, version, material)

    def forget(self, tenant: str, key_id: str) -> None:
        """Drop every cached version of a key (it was destroyed)."""
        for cached in [k for k in self._keys if k[0] == tenant and k[1] == key_id]:
            del self._keys[cached]

    def clear(self) -> None:
        """Drop everything (after a rolled-back transaction that may have created versions)."""
        self._keys.clear()
