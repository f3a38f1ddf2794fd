"""The keys audit hash chain: how a record's hash is computed and how a chain is verified.

Each tenant has one chain. A record's ``record_hash`` is the SHA-256 (lower-case hex)
of its JSON encoding, fields in declared order, with ``record_hash`` set to ``""``;
its ``prev_hash`` is the previous record's hash (``GENESIS_HASH`` for ``seq`` 1). An
edited record no longer matches its hash; a removed one leaves a gap in ``seq`` and a
broken link; reordered records break the links. Only msgspec and ``hashlib`` are
used, so integrators (and the CLI) verify a chain without the service's code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from aifactory.contracts.keys.v1 import AuditRecord

GENESIS_HASH = "0" * 64
_encoder = msgspec.json.Encoder()


def record_hash(record: AuditRecord) -> str:
    """The hash a record must carry (computed over everything but ``record_hash``)."""
    unsealed = msgspec.structs.replace(record, record_hash="")
    return hashlib.sha256(_encoder.encode(unsealed)).hexdigest()


def seal(record: AuditRecord) -> AuditRecord:
    """``record`` with its ``record_hash`` filled in."""
    return msgspec.structs.replace(record, record_hash=record_hash(record))


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """Why a chain does not verify, at which record."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"record {self.seq}: {self.problem}"


def verify_chain(
    records: Iterable[AuditRecord], *, start_hash: str = GENESIS_HASH
) -> list[ChainProblem]:
    """Every problem found walking ``records`` in order (empty: the chain is intact).

    ``records`` must start at ``seq`` 1 unless ``start_hash`` is the hash of the record
    before the first one given.
    """
    problems: list[ChainProblem] = []
    previous_hash = start_hash
    expected_seq: int | None = 1 if start_hash == GENESIS_HASH else None
    chain: str | None = None
    for record in records:
        if chain is None:
            chain = record.chain
        elif record.chain != chain:
            problems.append(
                ChainProblem(record.seq, f"belongs to chain {record.chain!r}, not {chain!r}")
            )
        if expected_seq is not None and record.seq != expected_seq:
            problems.append(
                ChainProblem(
                    record.seq,
                    f"sequence {record.seq} where {expected_seq} was expected "
                    "(a record was removed, inserted or reordered)",
                )
            )
        if record.prev_hash != previous_hash:
            problems.append(
                ChainProblem(
                    record.seq,
                    "prev_hash does not match the previous record's hash "
                    "(a record before it was removed, edited or reordered)",
                )
            )
        if record.record_hash != record_hash(record):
            problems.append(
                ChainProblem(
                    record.seq, "record_hash does not match its content (the record was edited)"
                )
            )
        previous_hash = record.record_hash
        expected_seq = record.seq + 1
    return problems
