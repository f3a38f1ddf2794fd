"""Admission: whether a job can ever run here, and why not."""

from __future__ import annotations

import pytest

from aifactory.scheduling.domain import check_admission, job_id_for

from ..conftest import spec
from .factory import engine_with


@pytest.fixture
def engine():  # type: ignore[no-untyped-def]
    """fra1 (EU/DE): 2 racks x 2 nodes x 8 B200; iad1 (US/VA): 1 node x 8 B200."""
    return engine_with(
        {"r1": ("fra1", 8, 2, 8), "r2": ("fra1", 8, 2, 8), "r3": ("iad1", 8, 1, 8)}, quota=24
    )


@pytest.mark.parametrize(
    ("job", "reason"),
    [
        (spec("a", accelerators=12, per_node=8), "invalid_shape"),
        (spec("b", accelerators=16, per_node=16), "invalid_shape"),
        (spec("c", tenant="nobody"), "unknown_tenant"),
        (spec("d", models=("H100",)), "unknown_model"),
        (spec("e", sites=("sin1",)), "no_allowed_site"),
        (spec("f", jurisdictions=("JP",)), "no_allowed_site"),
        (spec("g", accelerators=32), "exceeds_quota"),
        (spec("h", accelerators=16, jurisdictions=("US",)), "exceeds_factory"),
    ],
)
def test_impossible_jobs_are_rejected_with_their_reason(engine, job, reason) -> None:  # type: ignore[no-untyped-def]
    """Each kind of impossible request is rejected with its own reason and a message."""
    rejection = check_admission(job, engine.index, engine.quotas.get(job.tenant), None)
    assert rejection is not None
    assert (rejection.reason, bool(rejection.message)) == (reason, True)


def test_possible_jobs_are_admitted_even_when_they_must_wait(engine) -> None:  # type: ignore[no-untyped-def]
    """A job that fits the factory and quota is admitted whether or not capacity is free now."""
    assert (
        check_admission(
            spec("ok", accelerators=24, jurisdictions=("EU",)),
            engine.index,
            engine.quotas["acme"],
            None,
        )
        is None
    )


def test_key_custody_outside_every_eligible_site_rejects(engine) -> None:  # type: ignore[no-untyped-def]
    """A dataset key usable only where residency forbids the job makes it impossible."""
    job = spec("k", key="ds", jurisdictions=("EU",))
    rejection = check_admission(job, engine.index, engine.quotas["acme"], frozenset({"iad1"}))
    assert rejection is not None
    assert rejection.reason == "key_not_allowed"
    assert check_admission(job, engine.index, engine.quotas["acme"], frozenset({"fra1"})) is None


def test_job_ids_are_stable_per_tenant_and_client_id() -> None:
    """The same tenant and client job id give the same id; another tenant gets another."""
    assert job_id_for("acme", "x") == job_id_for("acme", "x") != job_id_for("globex", "x")
