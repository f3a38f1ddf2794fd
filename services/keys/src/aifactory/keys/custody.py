"""The custodian: serialises key operations into audited, group-committed transactions.

Requests are queued as they arrive and taken in arrival order by one writer task.
Consecutive cryptographic operations and queries (which change nothing but the audit
trail) share one transaction: their audit records are inserted with one statement
and committed together (group commit), and only then are their replies sent, so no
caller ever holds a data key whose audit record is not durable. A state-changing
command runs in a transaction of its own, so a revocation is committed before any
request that arrived after it is looked at. A refused request is audited in the same
transaction as the others; a handler that crashes is rolled back and audited as
``internal_error`` in a transaction of its own. A failed commit (e.g. a second
replica took the same chain position) is retried with the chain heads re-read.

Key rings are read once per transaction, so a revocation committed by another
replica (PostgreSQL) applies from the next batch on. With ``cache_rings`` (SQLite,
where this process is the only writer) rings are kept in memory between
transactions and changed only by this process's own commits, which saves a query
per batch.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from aifactory.contracts.base import Contract
from aifactory.contracts.cloudevents import utcnow
from aifactory.contracts.keys.v1 import AuditRecord, Caller, KeyDescription, Operation
from aifactory.contracts.registry import spec_of
from aifactory.keys import domain, handlers
from aifactory.keys.audit import AuditTrail
from aifactory.keys.domain import KeyRing, Refusal
from aifactory.keys.handlers import ADMINISTRATION, HANDLERS, Operations
from aifactory.keys.material import KeyMaterial
from aifactory.keys.store import KeyRepository
from aifactory.store.store import Store

log = structlog.get_logger(__name__)

COMMIT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Refused:
    """A refused request: why, and the audit record that logged the refusal (0 if none)."""

    refusal: Refusal
    chain: str
    audit_seq: int


@dataclass(frozen=True, slots=True)
class MaintenanceReport:
    """What one maintenance round found due (rotations and destructions applied)."""

    rings: int


Answer = Contract | Refused | MaintenanceReport


@dataclass(frozen=True, slots=True)
class Maintenance:
    """Rotate keys whose period elapsed and destroy keys whose waiting period ended."""


@dataclass(slots=True)
class PendingRequest:
    """A decoded request waiting for its answer."""

    command: Contract | Maintenance
    request_id: str
    respond: Callable[[Answer], Awaitable[None]]


class _HandlerCrashed(Exception):
    """A state-changing handler failed unexpectedly; its transaction must roll back."""

    def __init__(self, request: PendingRequest) -> None:
        super().__init__("handler crashed")
        self.request = request


def _version_of(reply: Contract) -> int:
    if isinstance(reply, KeyDescription):
        return reply.latest_version
    version = getattr(reply, "version", 0)
    return version if isinstance(version, int) else 0


def _named_keys(group: Sequence[PendingRequest]) -> set[tuple[str, str]]:
    """The (tenant, key id) pairs the requests of a group name."""
    named = set()
    for request in group:
        tenant = getattr(request.command, "tenant", None)
        key_id = getattr(request.command, "key_id", None)
        if isinstance(tenant, str) and isinstance(key_id, str):
            named.add((tenant, key_id))
    return named


class Custodian:
    """Queues requests and applies them in audited transactions, in arrival order."""

    def __init__(
        self,
        store: Store,
        material: KeyMaterial,
        *,
        service_caller: Caller,
        min_destruction_wait_s: int,
        max_batch: int = 256,
        cache_rings: bool = False,
        # Called after a commit that emitted lifecycle events: the relay is woken for
        # those; audit-only commits are relayed by its next poll, in bigger batches.
        on_commit: Callable[[], None] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.store = store
        self.material = material
        self.service_caller = service_caller
        self.min_destruction_wait_s = min_destruction_wait_s
        self.max_batch = max_batch
        self.cache_rings = cache_rings
        self._rings: dict[tuple[str, str], KeyRing] = {}
        self.on_commit = on_commit
        self.clock = clock
        self.trail = AuditTrail()
        self._queue: collections.deque[PendingRequest] = collections.deque()
        self._arrived = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.committed_batches = 0

    def submit(self, request: PendingRequest) -> None:
        """Queue a request; its ``respond`` is awaited once its audit record is committed."""
        self._queue.append(request)
        self._idle.clear()
        self._arrived.set()

    async def execute(self, command: Contract | Maintenance, request_id: str = "") -> Answer:
        """Submit ``command`` and wait for its answer (tests, maintenance)."""
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()

        async def respond(answer: Answer) -> None:
            answered.set_result(answer)

        self.submit(PendingRequest(command, request_id, respond))
        return await answered

    async def run(self) -> None:
        """Apply queued requests until cancelled."""
        while True:
            if not self._queue:
                self._idle.set()
                self._arrived.clear()
                await self._arrived.wait()
            self._idle.clear()
            batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
            await self.process(batch)

    async def idle(self) -> None:
        """Wait until every queued request has been answered."""
        await self._idle.wait()

    async def process(self, batch: Sequence[PendingRequest]) -> None:
        """Apply ``batch`` (grouped into transactions) and answer each request."""
        group: list[PendingRequest] = []
        for request in batch:
            alone = (
                isinstance(request.command, Maintenance) or type(request.command) in ADMINISTRATION
            )
            if alone:
                if group:
                    await self._commit_and_answer(group)
                    group = []
                await self._commit_and_answer([request])
            else:
                group.append(request)
        if group:
            await self._commit_and_answer(group)

    async def _commit_and_answer(self, group: list[PendingRequest]) -> None:
        answers = await self._commit(group)
        for request, answer in zip(group, answers, strict=True):
            try:
                await request.respond(answer)
            except Exception:
                log.exception("keys_reply_failed", request_id=request.request_id)

    async def _commit(self, group: list[PendingRequest]) -> list[Answer]:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                answers, announced = await self._transaction(group)
            except _HandlerCrashed as crashed:
                self._rolled_back()
                log.exception("keys_handler_failed", request_id=crashed.request.request_id)
                return await self._commit_crash(crashed.request)
            except Exception as exc:  # noqa: BLE001 - any database failure: retry, then refuse
                self._rolled_back()
                log.warning(
                    "keys_commit_failed", attempt=attempt, requests=len(group), error=repr(exc)
                )
                continue
            self.trail.committed()
            self.committed_batches += 1
            if announced and self.on_commit is not None:
                self.on_commit()
            return answers
        log.error("keys_commit_abandoned", requests=len(group))
        return [
            Refused(Refusal("internal_error", "the operation could not be committed"), "", 0)
            for _ in group
        ]

    def _rolled_back(self) -> None:
        self.trail.rolled_back()
        self._rings.clear()
        # Versions created by a rolled-back rotation must not survive in the cache.
        self.material.clear()

    async def _commit_crash(self, request: PendingRequest) -> list[Answer]:
        refusal = Refusal("internal_error", "the operation failed inside the service; see its logs")
        command = request.command
        if isinstance(command, Maintenance):
            return [Refused(refusal, "", 0)]
        try:
            async with self.store.unit_of_work() as uow:
                repo = KeyRepository(uow.session)
                record = await self._audit(repo, request, self.clock(), refusal=refusal)
                await self.trail.flush(repo, uow)
        except Exception:
            self.trail.rolled_back()
            log.exception("keys_audit_failed", request_id=request.request_id)
            return [Refused(refusal, "", 0)]
        self.trail.committed()
        return [Refused(refusal, record.chain, record.seq)]

    async def _transaction(self, group: list[PendingRequest]) -> tuple[list[Answer], bool]:
        now = self.clock()
        async with self.store.unit_of_work() as uow:
            repo = KeyRepository(uow.session)
            rings = self._rings if self.cache_rings else {}
            ops = Operations(repo, uow, self.material, now, self.min_destruction_wait_s, rings)
            await ops.load_rings(_named_keys(group))
            answers = [await self._apply(ops, request) for request in group]
            announced = bool(uow.emitted)
            await self.trail.flush(repo, uow)
        return answers, announced

    async def _apply(self, ops: Operations, request: PendingRequest) -> Answer:
        command = request.command
        if isinstance(command, Maintenance):
            return await self._maintain(ops)
        handler = HANDLERS[type(command)]
        try:
            reply = await handler(ops, command)
        except Refusal as refusal:
            record = await self._audit(ops.repo, request, ops.now, refusal=refusal)
            log.info(
                "key_operation_refused",
                operation=record.operation,
                tenant=record.chain,
                key_id=record.key_id,
                principal=record.principal,
                site=record.site,
                reason=refusal.reason,
                audit_seq=record.seq,
            )
            return Refused(refusal, record.chain, record.seq)
        except Exception as exc:
            if type(command) in ADMINISTRATION:
                raise _HandlerCrashed(request) from exc
            log.exception("keys_handler_failed", request_id=request.request_id)
            crash = Refusal("internal_error", "the operation failed inside the service")
            record = await self._audit(ops.repo, request, ops.now, refusal=crash)
            return Refused(crash, record.chain, record.seq)
        await self._audit(ops.repo, request, ops.now, version=_version_of(reply))
        return reply

    async def _audit(
        self,
        repo: KeyRepository,
        request: PendingRequest,
        now: dt.datetime,
        *,
        refusal: Refusal | None = None,
        version: int = 0,
    ) -> AuditRecord:
        command = request.command
        assert not isinstance(command, Maintenance)
        operation: Operation = spec_of(command).name  # type: ignore[assignment]
        return await self.trail.append(
            repo,
            chain=command.tenant,  # type: ignore[attr-defined]
            operation=operation,
            caller=command.caller,  # type: ignore[attr-defined]
            at=now,
            key_id=getattr(command, "key_id", ""),
            version=version,
            refused_because=refusal.reason if refusal is not None else "",
            request_id=request.request_id,
        )

    async def _maintain(self, ops: Operations) -> MaintenanceReport:
        due = await ops.repo.due_rings(ops.now)
        caller = self.service_caller
        for ring in due:
            if domain.destruction_due(ring, ops.now):
                changed = await handlers.destroy(ops, ring, caller.principal)
                operation: Operation = "destroy_key"
                log.info("key_destroyed_automatically", tenant=ring.tenant, key_id=ring.key_id)
            elif domain.rotation_due(ring, ops.now):
                changed = await handlers.rotate(ops, ring, caller.principal, automatic=True)
                operation = "rotate_key"
                log.info(
                    "key_rotated_automatically",
                    tenant=ring.tenant,
                    key_id=ring.key_id,
                    version=changed.latest_version,
                )
            else:
                continue
            await self.trail.append(
                ops.repo,
                chain=ring.tenant,
                operation=operation,
                caller=caller,
                at=ops.now,
                key_id=ring.key_id,
                version=changed.latest_version,
            )
        return MaintenanceReport(rings=len(due))
