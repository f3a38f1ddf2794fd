"""The kit refuses NATS servers that would silently ignore a consumer's filters."""

from __future__ import annotations

import pytest

from aifactory.bus.connection import UnsupportedServer, check_server_supports
from aifactory.bus.topology import ConsumerSpec

MULTI = ConsumerSpec(
    stream="FACTORY_JOBS",
    durable="billing-jobs",
    filter_subjects=("factory.jobs.v1.evt.job_placed.*", "factory.jobs.v1.evt.job_started.*"),
)
SINGLE = ConsumerSpec(
    stream="FACTORY_JOBS",
    durable="scheduling-submissions",
    filter_subjects=("factory.jobs.v1.evt.job_submitted.*",),
)


def test_old_server_is_refused_for_multi_filter_consumers() -> None:
    """nats-server 2.9 with a multi-subject consumer raises UnsupportedServer naming it."""
    with pytest.raises(UnsupportedServer, match=r"2\.9 .*billing-jobs.*>= 2\.10"):
        check_server_supports((2, 9), [SINGLE, MULTI])


def test_old_server_is_fine_for_single_filter_consumers() -> None:
    """A consumer with one filter subject works on any JetStream server."""
    check_server_supports((2, 9), [SINGLE])


def test_current_servers_are_accepted() -> None:
    """nats-server 2.10 and later take multi-subject consumers."""
    check_server_supports((2, 10), [MULTI])
    check_server_supports((3, 0), [MULTI])
