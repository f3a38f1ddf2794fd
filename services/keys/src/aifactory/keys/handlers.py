"""Key custody use cases: one function per command or query, inside a unit of work.

Each handler gets the ``Operations`` of the current transaction (repository, key
rings read for the batch, cached key material, the clock) and the decoded request,
and returns the typed reply or raises ``Refusal``. A handler raises before it changes
anything, so a refused request leaves only its audit record behind. Lifecycle
changes emit their events through the unit of work; no handler ever puts key
material anywhere but in its reply.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aifactory.contracts.base import Contract
from aifactory.contracts.keys.v1 import (
    AuditPage,
    Caller,
    CancelKeyDestruction,
    CreateKey,
    DataKey,
    DataKeyPlaintext,
    Decrypt,
    DecryptDataKey,
    DescribeKey,
    DestroyKey,
    DisableKey,
    EnableKey,
    Encrypt,
    GenerateDataKey,
    KeyCreated,
    KeyDescription,
    KeyDestroyed,
    KeyDestructionScheduled,
    KeyDisabled,
    KeyEnabled,
    KeyList,
    KeyRevoked,
    KeyRotated,
    ListAuditRecords,
    ListKeys,
    Opened,
    RevokeKey,
    Rewrap,
    Rewrapped,
    RotateKey,
    ScheduleKeyDestruction,
    Sealed,
    SetMinDecryptionVersion,
)
from aifactory.keys import domain
from aifactory.keys.crypto import (
    TenantKey,
    UnwrapFailed,
    ciphertext_version,
    new_key_material,
    tenant_key_binding,
)
from aifactory.keys.domain import KeyRing, Refusal
from aifactory.keys.material import KeyMaterial
from aifactory.keys.store import KeyRepository
from aifactory.store.uow import NewEvent, UnitOfWork


@dataclass
class Operations:
    """What the handlers of one transaction work with."""

    repo: KeyRepository
    uow: UnitOfWork
    material: KeyMaterial
    now: dt.datetime
    min_destruction_wait_s: int
    rings: dict[tuple[str, str], KeyRing] = field(default_factory=dict)

    async def load_rings(self, keys: set[tuple[str, str]]) -> None:
        """Read the rings a batch names that this transaction does not know yet, once."""
        missing = {key for key in keys if key not in self.rings}
        if missing:
            self.rings.update(await self.repo.rings(missing))

    async def ring(self, tenant: str, key_id: str) -> KeyRing:
        """The ring, or the ``key_not_found`` refusal."""
        found = self.rings.get((tenant, key_id))
        if found is None:
            found = await self.repo.ring(tenant, key_id)
        if found is None:
            raise Refusal("key_not_found", f"tenant {tenant} has no key {key_id}")
        return found

    async def usable_ring(self, tenant: str, key_id: str, caller: Caller) -> KeyRing:
        """The ring, if ``caller`` may use it now (policy, then lifecycle state)."""
        owner = domain.tenant_of(caller.principal)
        if owner is not None and owner != tenant:
            raise Refusal("cross_tenant", f"{caller.principal} may not use keys of tenant {tenant}")
        ring = await self.ring(tenant, key_id)
        domain.check_use(ring, caller)
        domain.check_usable(ring)
        return ring

    async def managed_ring(self, tenant: str, key_id: str, caller: Caller) -> KeyRing:
        """The ring, if ``caller`` administers it."""
        domain.check_administrator(caller, tenant)
        return await self.ring(tenant, key_id)

    async def save(self, ring: KeyRing) -> None:
        """Write a changed ring and keep it as this transaction's view."""
        await self.repo.save_ring(ring)
        self.rings[(ring.tenant, ring.key_id)] = ring

    async def add_version(self, ring: KeyRing) -> None:
        """Create, wrap and store the material of ``ring.latest_version``."""
        material = new_key_material()
        binding = tenant_key_binding(ring.tenant, ring.key_id, ring.latest_version)
        wrapped = self.material.root.wrap(material, binding)
        await self.repo.add_version(
            ring.tenant, ring.key_id, ring.latest_version, wrapped, self.now
        )
        self.material.remember(ring.tenant, ring.key_id, ring.latest_version, material)

    async def opening_key(self, ring: KeyRing, ciphertext: bytes) -> TenantKey:
        """The version that sealed ``ciphertext``, if the ring still decrypts it."""
        try:
            version = ciphertext_version(ciphertext)
        except UnwrapFailed as exc:
            raise Refusal("invalid_ciphertext", str(exc)) from None
        domain.check_decryptable(ring, version)
        return await self.material.version(self.repo, ring.tenant, ring.key_id, version)

    def emit(self, event: Contract, tenant: str, key_id: str) -> None:
        """Queue a lifecycle event for the outbox."""
        self.uow.emit(NewEvent(event, tenant=tenant, subject=f"{tenant}/{key_id}"))


def _open(key: TenantKey, ciphertext: bytes, context: str) -> bytes:
    try:
        return key.open(ciphertext, context)
    except UnwrapFailed as exc:
        raise Refusal("invalid_ciphertext", str(exc)) from None


# ---------------------------------------------------------------- administration


async def create_key(ops: Operations, cmd: CreateKey) -> KeyDescription:
    """Create a ring at version 1; the same request again returns the existing ring."""
    domain.check_administrator(cmd.caller, cmd.tenant)
    fresh = domain.new_ring(cmd.tenant, cmd.key_id, cmd.policy, ops.now)
    existing = ops.rings.get((cmd.tenant, cmd.key_id)) or await ops.repo.ring(
        cmd.tenant, cmd.key_id
    )
    if existing is not None:
        if existing.policy != fresh.policy or existing.state == "destroyed":
            raise Refusal(
                "key_exists",
                f"tenant {cmd.tenant} already has a key {cmd.key_id} ({existing.state})",
            )
        return existing.describe()
    await ops.save(fresh)
    await ops.add_version(fresh)
    ops.emit(
        KeyCreated(
            tenant=fresh.tenant,
            key_id=fresh.key_id,
            version=1,
            policy=fresh.policy,
            by=cmd.caller.principal,
            at=ops.now,
        ),
        fresh.tenant,
        fresh.key_id,
    )
    return fresh.describe()


async def rotate(ops: Operations, ring: KeyRing, by: str, *, automatic: bool) -> KeyRing:
    """Give ``ring`` a new version and announce it."""
    rotated = domain.rotate(ring, ops.now)
    await ops.save(rotated)
    await ops.add_version(rotated)
    ops.emit(
        KeyRotated(
            tenant=rotated.tenant,
            key_id=rotated.key_id,
            version=rotated.latest_version,
            automatic=automatic,
            by=by,
            at=ops.now,
        ),
        rotated.tenant,
        rotated.key_id,
    )
    return rotated


async def rotate_key(ops: Operations, cmd: RotateKey) -> KeyDescription:
    """Add a version on command."""
    ring = await ops.managed_ring(cmd.tenant, cmd.key_id, cmd.caller)
    return (await rotate(ops, ring, cmd.caller.principal, automatic=False)).describe()


async def set_min_decryption_version(
    ops: Operations, cmd: SetMinDecryptionVersion
) -> KeyDescription:
    """Refuse decryption below a version from now on."""
    ring = await ops.managed_ring(cmd.tenant, cmd.key_id, cmd.caller)
    changed = domain.set_min_decryption_version(ring, cmd.min_decryption_version)
    await ops.save(changed)
    return changed.describe()


async def disable_key(ops: Operations, cmd: DisableKey) -> KeyDescription:
    """Suspend a key."""
    ring = await ops.managed_ring(cmd.tenant, cmd.key_id, cmd.caller)
    changed = domain.disable(ring)
    if changed != ring:
        await ops.save(changed)
        ops.emit(
            KeyDisabled(
                tenant=ring.tenant, key_id=ring.key_id, by=cmd.caller.principal, at=ops.now
            ),
            ring.tenant,
            ring.key_id,
        )
    return changed.describe()


async def enable_key(ops: Operations, cmd: EnableKey) -> KeyDescription:
    """Resume a disabled key."""
    ring = await ops.managed_ring(cmd.tenant, cmd.key_id, cmd.caller)
    changed = domain.enable(ring)
    if changed != ring:
        await ops.save(changed)
        ops.emit(
            KeyEnabled(tenant=ring.tenant, key_id=ring.key_id, by=cmd.caller.principal, at=ops.now),
            ring.tenant,
            ring.key_id,
        )
    return changed.describe()


async def revoke_key(ops: Operations, cmd: RevokeKey) -> KeyDescription:
    """Revoke a key for good."""
    ring = await ops.managed_ring(cmd.tenant, cmd.key_id, cmd.caller)
    changed = domain.revoke(ring)
    if changed != ring:
        await ops.save(changed)
        ops.emit(
            KeyRevoked(
                tenant=ring.tenant,
                key_id=ring.key_id,
                reason=cmd.reason,
                by=cmd.caller.principal,
                at=ops.now,
            ),
            ring.tenant,
            ring.key_id,
        )
    return changed.describe()


async def schedule_key_destruction(ops: Operations, cmd: ScheduleKeyDestruction) -> KeyDescription:
    """Make a key unusable now and destroyable after the waiting period."""
    ring = await ops.managed_ring(cmd.tenant, cmd.key_id, cmd.caller)
    changed = domain.schedule_destruction(
        ring, ops.now, cmd.waiting_period_s, ops.min_destruction_wait_s
    )
    if changed != ring:
        await ops.save(changed)
        assert changed.destroy_after is not None
        ops.emit(
            KeyDestructionScheduled(
                tenant=ring.tenant,
                key_id=ring.key_id,
                destroy_after=changed.destroy_after,
                by=cmd.caller.principal,
                at=ops.now,
            ),
            ring.tenant,
            ring.key_id,
        )
    return changed.describe()


async def cancel_key_destruction(ops: Operations, cmd: CancelKeyDestruction) -> KeyDescription:
    """Return a key scheduled for destruction to its previous state."""
    ring = await ops.managed_ring(cmd.tenant, cmd.key_id, cmd.caller)
    changed = domain.cancel_destruction(ring)
    await ops.save(changed)
    if changed.state == "enabled":
        ops.emit(
            KeyEnabled(tenant=ring.tenant, key_id=ring.key_id, by=cmd.caller.principal, at=ops.now),
            ring.tenant,
            ring.key_id,
        )
    return changed.describe()


async def destroy(ops: Operations, ring: KeyRing, by: str) -> KeyRing:
    """Delete a key's material (crypto-shredding) and announce it."""
    destroyed = domain.destroy(ring, ops.now)
    if destroyed == ring:
        return ring
    await ops.repo.destroy_material(ring.tenant, ring.key_id, ops.now)
    ops.material.forget(ring.tenant, ring.key_id)
    await ops.save(destroyed)
    ops.emit(
        KeyDestroyed(
            tenant=ring.tenant, key_id=ring.key_id, versions=ring.latest_version, by=by, at=ops.now
        ),
        ring.tenant,
        ring.key_id,
    )
    return destroyed


async def destroy_key(ops: Operations, cmd: DestroyKey) -> KeyDescription:
    """Destroy a key whose waiting period has ended."""
    ring = await ops.managed_ring(cmd.tenant, cmd.key_id, cmd.caller)
    return (await destroy(ops, ring, cmd.caller.principal)).describe()


# ---------------------------------------------------------------- cryptography


async def generate_data_key(ops: Operations, cmd: GenerateDataKey) -> DataKey:
    """A new data key, in plaintext and wrapped under the latest version."""
    ring = await ops.usable_ring(cmd.tenant, cmd.key_id, cmd.caller)
    key = await ops.material.version(ops.repo, ring.tenant, ring.key_id, ring.latest_version)
    data_key = new_key_material()
    return DataKey(
        tenant=ring.tenant,
        key_id=ring.key_id,
        version=key.version,
        plaintext=data_key,
        wrapped=key.seal(data_key, cmd.context),
    )


async def decrypt_data_key(ops: Operations, cmd: DecryptDataKey) -> DataKeyPlaintext:
    """Unwrap a data key."""
    ring = await ops.usable_ring(cmd.tenant, cmd.key_id, cmd.caller)
    key = await ops.opening_key(ring, cmd.wrapped)
    return DataKeyPlaintext(
        tenant=ring.tenant,
        key_id=ring.key_id,
        version=key.version,
        plaintext=_open(key, cmd.wrapped, cmd.context),
    )


async def encrypt(ops: Operations, cmd: Encrypt) -> Sealed:
    """Seal a small payload under the latest version."""
    ring = await ops.usable_ring(cmd.tenant, cmd.key_id, cmd.caller)
    key = await ops.material.version(ops.repo, ring.tenant, ring.key_id, ring.latest_version)
    return Sealed(
        tenant=ring.tenant,
        key_id=ring.key_id,
        version=key.version,
        ciphertext=key.seal(cmd.plaintext, cmd.context),
    )


async def decrypt(ops: Operations, cmd: Decrypt) -> Opened:
    """Open a sealed payload."""
    ring = await ops.usable_ring(cmd.tenant, cmd.key_id, cmd.caller)
    key = await ops.opening_key(ring, cmd.ciphertext)
    return Opened(
        tenant=ring.tenant,
        key_id=ring.key_id,
        version=key.version,
        plaintext=_open(key, cmd.ciphertext, cmd.context),
    )


async def rewrap(ops: Operations, cmd: Rewrap) -> Rewrapped:
    """Re-seal ciphertexts under the latest version; all or nothing."""
    ring = await ops.usable_ring(cmd.tenant, cmd.key_id, cmd.caller)
    latest = await ops.material.version(ops.repo, ring.tenant, ring.key_id, ring.latest_version)
    resealed = []
    for index, item in enumerate(cmd.items):
        try:
            old = await ops.opening_key(ring, item.ciphertext)
            resealed.append(latest.seal(_open(old, item.ciphertext, item.context), item.context))
        except Refusal as refusal:
            raise Refusal(refusal.reason, f"item {index}: {refusal.message}") from None
    return Rewrapped(
        tenant=ring.tenant, key_id=ring.key_id, version=latest.version, ciphertexts=resealed
    )


# ---------------------------------------------------------------- queries


async def describe_key(ops: Operations, cmd: DescribeKey) -> KeyDescription:
    """A ring, for its administrators and its allowed callers."""
    owner = domain.tenant_of(cmd.caller.principal)
    if owner is not None and owner != cmd.tenant:
        raise Refusal(
            "cross_tenant", f"{cmd.caller.principal} may not read keys of tenant {cmd.tenant}"
        )
    ring = await ops.ring(cmd.tenant, cmd.key_id)
    if cmd.caller.principal not in ring.policy.allowed_callers:
        domain.check_administrator(cmd.caller, cmd.tenant)
    return ring.describe()


async def list_keys(ops: Operations, cmd: ListKeys) -> KeyList:
    """A tenant's rings, for its administrators."""
    domain.check_administrator(cmd.caller, cmd.tenant)
    return KeyList(keys=[ring.describe() for ring in await ops.repo.tenant_rings(cmd.tenant)])


async def list_audit_records(ops: Operations, cmd: ListAuditRecords) -> AuditPage:
    """A page of a tenant's audit chain (committed records only)."""
    domain.check_administrator(cmd.caller, cmd.tenant)
    records = await ops.repo.audit_page(cmd.tenant, cmd.after_seq, cmd.limit)
    head_seq, _ = await ops.repo.audit_head(cmd.tenant)
    return AuditPage(chain=cmd.tenant, records=records, head_seq=head_seq)


Handler = Callable[[Operations, Any], Awaitable[Contract]]

ADMINISTRATION: dict[type[Contract], Handler] = {
    CreateKey: create_key,
    RotateKey: rotate_key,
    SetMinDecryptionVersion: set_min_decryption_version,
    DisableKey: disable_key,
    EnableKey: enable_key,
    RevokeKey: revoke_key,
    ScheduleKeyDestruction: schedule_key_destruction,
    CancelKeyDestruction: cancel_key_destruction,
    DestroyKey: destroy_key,
}
"""State-changing commands: each runs in a transaction of its own."""

READS: dict[type[Contract], Handler] = {
    GenerateDataKey: generate_data_key,
    DecryptDataKey: decrypt_data_key,
    Encrypt: encrypt,
    Decrypt: decrypt,
    Rewrap: rewrap,
    DescribeKey: describe_key,
    ListKeys: list_keys,
    ListAuditRecords: list_audit_records,
}
"""Commands and queries that change nothing but the audit trail: batched together."""

HANDLERS: dict[type[Contract], Handler] = {**ADMINISTRATION, **READS}
