"""The keys repository: reads and writes key rings, wrapped versions and audit records.

It works inside the caller's unit of work (one transaction), converts rows to the
domain's ``KeyRing`` and back, and writes audit records with one set-based INSERT
per commit, which is what keeps the audited hot path cheap.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Sequence

import msgspec
from sqlalchemy import insert, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from aifactory.contracts.keys.audit_chain import GENESIS_HASH
from aifactory.contracts.keys.v1 import AuditRecord, KeyPolicy, KeyState
from aifactory.keys.domain import KeyRing
from aifactory.keys.tables import AuditRow, KeyRingRow, KeyVersionRow

_policy_decoder = msgspec.json.Decoder(KeyPolicy)
_record_decoder = msgspec.json.Decoder(AuditRecord)
_encoder = msgspec.json.Encoder()


def _ring(row: KeyRingRow) -> KeyRing:
    return KeyRing(
        tenant=row.tenant,
        key_id=row.key_id,
        state=msgspec.convert(row.state, KeyState),
        policy=_policy_decoder.decode(row.policy),
        latest_version=row.latest_version,
        min_decryption_version=row.min_decryption_version,
        created_at=row.created_at,
        rotated_at=row.rotated_at,
        destroy_after=row.destroy_after,
        state_before_destruction=(
            msgspec.convert(row.state_before_destruction, KeyState)
            if row.state_before_destruction
            else None
        ),
    )


def _rotation_due_at(ring: KeyRing) -> dt.datetime | None:
    period = ring.policy.rotation_period_s
    if ring.state != "enabled" or period <= 0:
        return None
    return ring.rotated_at + dt.timedelta(seconds=period)


def decode_audit_record(raw: bytes) -> AuditRecord:
    """An audit record from its stored encoding."""
    return _record_decoder.decode(raw)


class KeyRepository:
    """Key rings, versions and audit records inside one transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def rings(self, keys: Collection[tuple[str, str]]) -> dict[tuple[str, str], KeyRing]:
        """The rings named by (tenant, key id); missing ones are absent from the result."""
        if not keys:
            return {}
        tenants = {tenant for tenant, _ in keys}
        key_ids = {key_id for _, key_id in keys}
        rows = await self.session.exec(
            select(KeyRingRow).where(
                col(KeyRingRow.tenant).in_(tenants), col(KeyRingRow.key_id).in_(key_ids)
            )
        )
        found = {(row.tenant, row.key_id): _ring(row) for row in rows.all()}
        return {key: ring for key, ring in found.items() if key in keys}

    async def ring(self, tenant: str, key_id: str) -> KeyRing | None:
        """One ring, or ``None``."""
        row = await self.session.get(KeyRingRow, (tenant, key_id))
        return _ring(row) if row is not None else None

    async def tenant_rings(self, tenant: str) -> list[KeyRing]:
        """Every ring of ``tenant``, by key id."""
        rows = await self.session.exec(
            select(KeyRingRow)
            .where(col(KeyRingRow.tenant) == tenant)
            .order_by(col(KeyRingRow.key_id))
        )
        return [_ring(row) for row in rows.all()]

    async def due_rings(self, now: dt.datetime, limit: int = 100) -> list[KeyRing]:
        """Rings whose rotation period or destruction waiting period has ended."""
        rows = await self.session.exec(
            select(KeyRingRow)
            .where(
                or_(
                    col(KeyRingRow.rotation_due_at) <= now,
                    (col(KeyRingRow.state) == "destruction_scheduled")
                    & (col(KeyRingRow.destroy_after) <= now),
                )
            )
            .limit(limit)
        )
        return [_ring(row) for row in rows.all()]

    async def save_ring(self, ring: KeyRing) -> None:
        """Insert or update ``ring``."""
        row = await self.session.get(KeyRingRow, (ring.tenant, ring.key_id))
        if row is None:
            row = KeyRingRow(
                tenant=ring.tenant,
                key_id=ring.key_id,
                policy="",
                state="",
                latest_version=0,
                min_decryption_version=0,
                created_at=ring.created_at,
                rotated_at=ring.rotated_at,
            )
        row.state = ring.state
        row.policy = _encoder.encode(ring.policy).decode()
        row.latest_version = ring.latest_version
        row.min_decryption_version = ring.min_decryption_version
        row.rotated_at = ring.rotated_at
        row.rotation_due_at = _rotation_due_at(ring)
        row.destroy_after = ring.destroy_after
        row.state_before_destruction = ring.state_before_destruction
        self.session.add(row)

    async def add_version(
        self, tenant: str, key_id: str, version: int, wrapped: bytes, now: dt.datetime
    ) -> None:
        """Store a new key version, wrapped by the root of trust."""
        self.session.add(
            KeyVersionRow(
                tenant=tenant, key_id=key_id, version=version, wrapped=wrapped, created_at=now
            )
        )

    async def wrapped_version(self, tenant: str, key_id: str, version: int) -> bytes | None:
        """The wrapped material of one version (``None`` if absent or destroyed)."""
        row = await self.session.get(KeyVersionRow, (tenant, key_id, version))
        return row.wrapped if row is not None else None

    async def destroy_material(self, tenant: str, key_id: str, now: dt.datetime) -> int:
        """Delete the wrapped material of every version of a key; returns how many."""
        result = await self.session.exec(
            update(KeyVersionRow)
            .where(
                col(KeyVersionRow.tenant) == tenant,
                col(KeyVersionRow.key_id) == key_id,
                col(KeyVersionRow.wrapped).is_not(None),
            )
            .values(wrapped=None, destroyed_at=now)
        )
        return int(result.rowcount or 0)

    async def audit_head(self, chain: str) -> tuple[int, str]:
        """The last (seq, hash) of a chain; (0, genesis) when it is empty."""
        rows = await self.session.exec(
            select(col(AuditRow.seq), col(AuditRow.record_hash))
            .where(col(AuditRow.chain) == chain)
            .order_by(col(AuditRow.seq).desc())
            .limit(1)
        )
        head = rows.first()
        return (int(head[0]), str(head[1])) if head is not None else (0, GENESIS_HASH)

    async def append_audit(self, records: Sequence[tuple[AuditRecord, bytes]]) -> None:
        """Insert sealed records with their encodings (one statement)."""
        if not records:
            return
        connection = await self.session.connection()
        await connection.execute(
            insert(AuditRow),
            [
                {
                    "chain": record.chain,
                    "seq": record.seq,
                    "record_hash": record.record_hash,
                    "record": encoded,
                }
                for record, encoded in records
            ],
        )

    async def audit_page(self, chain: str, after_seq: int, limit: int) -> list[AuditRecord]:
        """Records of ``chain`` after ``after_seq``, oldest first."""
        rows = await self.session.exec(
            select(col(AuditRow.record))
            .where(col(AuditRow.chain) == chain, col(AuditRow.seq) > after_seq)
            .order_by(col(AuditRow.seq))
            .limit(limit)
        )
        return [decode_audit_record(raw) for raw in rows.all()]


def encode_record(record: AuditRecord) -> bytes:
    """The stored encoding of an audit record."""
    return _encoder.encode(record)


def chains_of(records: Iterable[AuditRecord]) -> set[str]:
    """The chains these records belong to."""
    return {record.chain for record in records}
