"""ServiceMetrics: per-object registries, exposition text and the /metrics endpoint."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from aifactory.observability.metrics import ServiceMetrics, start_metrics_server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_render_contains_counters_after_increments() -> None:
    """Incremented counters and an observed histogram appear with service and label values."""
    metrics = ServiceMetrics("scheduling")
    metrics.consumed("scheduling-jobs").inc(3)
    metrics.published("factory.scheduling.v1.evt.job_placed.{tenant}").inc()
    metrics.redelivered("scheduling-jobs").inc()
    metrics.dead_lettered("scheduling-jobs", "undecodable").inc(2)
    metrics.handler_seconds("place_job").observe(0.003)
    text = metrics.render()
    assert (
        'aifactory_messages_consumed_total{consumer="scheduling-jobs",service="scheduling"} 3.0'
        in text
    )
    assert (
        'aifactory_messages_published_total{service="scheduling",'
        'subject="factory.scheduling.v1.evt.job_placed.{tenant}"} 1.0'
    ) in text
    assert (
        'aifactory_messages_redelivered_total{consumer="scheduling-jobs",service="scheduling"} 1.0'
        in text
    )
    assert (
        'aifactory_messages_dead_lettered_total{consumer="scheduling-jobs",reason="undecodable",'
        'service="scheduling"} 2.0'
    ) in text
    assert 'aifactory_handler_seconds_count{handler="place_job",service="scheduling"} 1.0' in text


def test_label_children_are_reused() -> None:
    """Asking twice for the same counter gives the same child, so both increments count."""
    metrics = ServiceMetrics("billing")
    assert metrics.consumed("usage") is metrics.consumed("usage")
    metrics.consumed("usage").inc()
    metrics.consumed("usage").inc()
    assert (
        'aifactory_messages_consumed_total{consumer="usage",service="billing"} 2.0'
        in metrics.render()
    )


def test_each_object_has_its_own_registry() -> None:
    """Two ServiceMetrics for the same service coexist and count independently."""
    first, second = ServiceMetrics("keys"), ServiceMetrics("keys")
    first.consumed("commands").inc(5)
    assert 'consumer="commands",service="keys"} 5.0' in first.render()
    assert 'consumer="commands"' not in second.render()


def test_handler_timer_records_an_observation() -> None:
    """Timing a block with handler_seconds(...).time() adds one observation."""
    metrics = ServiceMetrics("health", process_metrics=False)
    with metrics.handler_seconds("judge").time():
        pass
    assert (
        'aifactory_handler_seconds_count{handler="judge",service="health"} 1.0' in metrics.render()
    )


def test_http_endpoint_serves_metrics_on_free_port() -> None:
    """start_metrics_server serves the registry at /metrics; after stop the port refuses connections."""
    metrics = ServiceMetrics("inventory")
    metrics.consumed("inventory-health").inc(7)
    port = _free_port()
    server = start_metrics_server(metrics, port, host="127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(server.url, timeout=5) as response:
            body = response.read().decode()
        assert response.status == 200
        assert (
            'aifactory_messages_consumed_total{consumer="inventory-health",service="inventory"} 7.0'
            in body
        )
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=2)


def test_port_zero_disables_the_endpoint() -> None:
    """Port 0 means metrics are not served: nothing starts and None is returned."""
    assert start_metrics_server(ServiceMetrics("billing"), 0) is None
