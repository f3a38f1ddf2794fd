"""The audit hash chain detects edited, removed and reordered records."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from aifactory.contracts.keys.audit_chain import GENESIS_HASH, record_hash, seal, verify_chain
from aifactory.contracts.keys.v1 import AuditRecord

AT = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def chain(length: int = 5) -> list[AuditRecord]:
    """A valid chain of ``length`` records."""
    records: list[AuditRecord] = []
    previous = GENESIS_HASH
    for seq in range(1, length + 1):
        record = seal(
            AuditRecord(
                chain="acme",
                seq=seq,
                prev_hash=previous,
                at=AT + dt.timedelta(seconds=seq),
                operation="generate_data_key",
                key_id="datasets",
                version=1,
                principal="tenant:acme",
                site="fra-1",
                outcome="allowed",
            )
        )
        records.append(record)
        previous = record.record_hash
    return records


def test_an_untouched_chain_verifies() -> None:
    """A chain built link by link has no problems."""
    assert verify_chain(chain()) == []


def test_hash_covers_every_field() -> None:
    """Changing any field (here the outcome) changes the record's hash."""
    record = chain(1)[0]
    assert record_hash(msgspec.structs.replace(record, outcome="refused")) != record.record_hash


def test_an_edited_record_is_detected() -> None:
    """Editing one record's content is reported at that record."""
    records = chain()
    records[2] = msgspec.structs.replace(records[2], principal="tenant:globex")
    problems = verify_chain(records)
    assert [p.seq for p in problems] == [3]
    assert "edited" in str(problems[0])


def test_an_edited_and_resealed_record_breaks_the_next_link() -> None:
    """Re-hashing an edited record does not help: the next record's prev_hash no longer matches."""
    records = chain()
    records[2] = seal(msgspec.structs.replace(records[2], outcome="refused"))
    assert [p.seq for p in verify_chain(records)] == [4]


def test_a_removed_record_is_detected() -> None:
    """Removing a record leaves a sequence gap and a broken link."""
    records = chain()
    del records[1]
    problems = verify_chain(records)
    assert {p.seq for p in problems} == {3}
    assert any("sequence" in p.problem for p in problems)


@pytest.mark.parametrize("first", [0, 2])
def test_reordered_records_are_detected(first: int) -> None:
    """Swapping two records is reported."""
    records = chain()
    records[first], records[first + 1] = records[first + 1], records[first]
    assert verify_chain(records) != []


def test_a_truncated_head_is_detected() -> None:
    """A chain that does not start at sequence 1 from genesis is reported."""
    assert verify_chain(chain()[1:]) != []
