"""The audit trail: appends hash-chained records, one chain per tenant.

Every operation, allowed or refused, becomes an ``AuditRecord`` linked to the
previous record of its tenant's chain. Records are appended in the same transaction
as the operation's state change and published through the outbox as one
``AuditRecordsAppended`` event per chain and commit. The trail caches each chain's
head; appends are serialised by the custodian (one writer per process), and the
(chain, seq) primary key makes a second replica racing for the same position fail
its commit, after which the heads are re-read (``forget_heads``) and the batch is
retried. Records never hold key material: only ids, versions, the caller and the
outcome.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from aifactory.contracts.keys.audit_chain import seal
from aifactory.contracts.keys.v1 import AuditRecord, AuditRecordsAppended, Caller, Operation
from aifactory.keys.store import KeyRepository, encode_record
from aifactory.store.uow import NewEvent, UnitOfWork

MAX_RECORDS_PER_EVENT = 200


@dataclass
class AuditTrail:
    """Chain heads (committed) and the records of the transaction in progress."""

    _heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    _pending_heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    _pending: list[AuditRecord] = field(default_factory=list)

    async def _head(self, repo: KeyRepository, chain: str) -> tuple[int, str]:
        if chain in self._pending_heads:
            return self._pending_heads[chain]
        if chain not in self._heads:
            self._heads[chain] = await repo.audit_head(chain)
        return self._heads[chain]

    async def append(
        self,
        repo: KeyRepository,
        *,
        chain: str,
        operation: Operation,
        caller: Caller,
        at: dt.datetime,
        key_id: str = "",
        version: int = 0,
        refused_because: str = "",
        request_id: str = "",
    ) -> AuditRecord:
        """Seal the next record of ``chain`` (written by ``flush``)."""
        seq, previous = await self._head(repo, chain)
        record = seal(
            AuditRecord(
                chain=chain,
                seq=seq + 1,
                prev_hash=previous,
                at=at,
                operation=operation,
                key_id=key_id,
                version=version,
                principal=caller.principal,
                site=caller.site,
                outcome="refused" if refused_because else "allowed",
                reason=refused_because,
                request_id=request_id,
            )
        )
        self._pending_heads[chain] = (record.seq, record.record_hash)
        self._pending.append(record)
        return record

    async def flush(self, repo: KeyRepository, uow: UnitOfWork) -> None:
        """Insert the pending records and emit their audit events (before commit)."""
        if not self._pending:
            return
        await repo.append_audit([(record, encode_record(record)) for record in self._pending])
        by_chain: dict[str, list[AuditRecord]] = {}
        for record in self._pending:
            by_chain.setdefault(record.chain, []).append(record)
        for chain, records in by_chain.items():
            for start in range(0, len(records), MAX_RECORDS_PER_EVENT):
                chunk = records[start : start + MAX_RECORDS_PER_EVENT]
                uow.emit(
                    NewEvent(
                        AuditRecordsAppended(chain=chain, records=chunk),
                        tenant=chain,
                        subject=f"{chain}/audit/{chunk[0].seq}-{chunk[-1].seq}",
                    )
                )

    def committed(self) -> None:
        """The transaction committed: the pending heads are the chains' heads now."""
        self._heads.update(self._pending_heads)
        self._pending_heads.clear()
        self._pending.clear()

    def rolled_back(self) -> None:
        """The transaction failed: drop its records and re-read every head next time."""
        self._pending_heads.clear()
        self._pending.clear()
        self._heads.clear()
